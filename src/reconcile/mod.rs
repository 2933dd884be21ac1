//! The reconciler: inventory (what is deployed), plan (desired x actual -> actions), apply.
