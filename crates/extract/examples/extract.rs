//! Prints the text extracted from a file, as ragstore's ingestion would see it:
//! `cargo run --release -p ragstore-extract --example extract -- FILE`. Used by
//! `scripts/fidelity.py`.
//! With `--sections`, also prints the sections (page, sheet, heading) to stderr.

use std::io::Write;
use std::process::ExitCode;

use ragstore_extract::{extract, ExtractError};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let sections = args.iter().any(|a| a == "--sections");
    args.retain(|a| a != "--sections");
    let Some(path) = args.first() else {
        eprintln!("usage: extract [--sections] FILE");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match extract(&bytes, &name) {
        Ok(out) => {
            if sections {
                for s in &out.sections {
                    eprintln!(
                        "{} {}",
                        s.start,
                        serde_json::Value::Object(s.location.clone())
                    );
                }
            }
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out.text.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(ExtractError::Unsupported(m)) => {
            eprintln!("unsupported: {m}");
            ExitCode::from(3)
        }
        Err(ExtractError::Invalid(m)) => {
            eprintln!("invalid: {m}");
            ExitCode::from(4)
        }
    }
}
