//! Rehearsal: drills that only a view's sources see ([`drills`], [`views`]) and the safety
//! rules checked before an operator change ([`safety`]). Pure, or state files only: the
//! states task applies them, `detour simulate` and `detour explain` read them.

pub mod drills;
pub mod safety;
pub mod views;

pub use drills::{Drill, Drills};
pub use safety::{Breach, breaches, refusals};
pub use views::Views;
