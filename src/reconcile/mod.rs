//! The reconciler: the inventory of what nemoclaw deployed, planning (a pure function from
//! desired x actual to actions), and rendering plans for people and machines.

pub mod inventory;
pub mod plan;
pub mod render;

#[cfg(test)]
mod plan_tests;
