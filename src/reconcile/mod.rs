//! The reconciler: the inventory of what nemoclaw deployed, planning (a pure function from
//! desired x actual to actions), and rendering plans for people and machines.

pub mod apply;
pub mod inventory;
pub mod live;
pub mod plan;
pub mod prepare;
pub mod render;
pub mod saved;

#[cfg(test)]
mod plan_tests;
