//! This crate only hosts the end-to-end tests in the repository's top-level `tests/` folder
//! (see its Cargo.toml); it has no code of its own.
