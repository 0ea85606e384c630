//! `anchorscope model install [NAME]`: fetch a model (the default one unless named) and the
//! sentence embedder into the cache (verified), printing what it does.

use anchorscope::engine::install;

use super::ModelArgs;

pub fn run(args: &ModelArgs) -> anyhow::Result<()> {
    let model = match args.name.as_deref() {
        None => &install::DEFAULT_MODEL,
        // clap only lets the known names through; the error is for a caller that bypasses it.
        Some(name) => install::find_model(name).ok_or_else(|| {
            anyhow::anyhow!(
                "model install {name}: no model of that name (known: {})",
                install::MODEL_NAMES.join(", ")
            )
        })?,
    };
    let mut log = |m: &str| eprintln!("{m}");
    let path = install::ensure_model(model, &mut log)?;
    let default = if model.name == install::DEFAULT_MODEL.name {
        " (the default)"
    } else {
        ""
    };
    println!("model {}{default}: {}", model.name, path.display());
    if !args.no_embedder {
        let embedder = install::ensure_embedder(&mut log)?;
        println!("sentence embedder: {}", embedder.display());
    }
    Ok(())
}
