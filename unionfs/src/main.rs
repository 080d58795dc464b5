//! `burrowfs`: not implemented yet; says so instead of pretending.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("burrowfs is not implemented yet")
}
