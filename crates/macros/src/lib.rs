//! The `#[atoll::main]` attribute.
