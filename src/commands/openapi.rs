//! `openptl openapi`: the OpenAPI document of the HTTP API, on stdout.

/// Prints the document, pretty.
pub fn run() -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&openptl_http::openapi::document())?
    );
    Ok(())
}
