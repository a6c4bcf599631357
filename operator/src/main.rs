//! `ruche-operator`: the operator binary (subcommands for its modes).

fn main() {}
