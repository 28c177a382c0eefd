//! Generates the protobuf types and the gRPC service from `proto/` with the
//! `protoc` that `protoc-bin-vendored` ships (so a fresh machine needs no
//! system package); `PROTOC=/path/to/protoc` overrides it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts run single-threaded; nothing reads the
        // environment concurrently.
        unsafe {
            std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
        }
    }
    tonic_build::configure()
        // tonic's prost codec, counting an append's events before it
        // decodes them (`src/codec.rs`).
        .codec_path("crate::codec::BoundedCodec")
        // serde mirrors of the messages: the JSON form of an event's data
        // is exactly the HTTP API's (see `convert.rs`).
        .type_attribute(
            ".openptl.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .type_attribute(
            ".openptl.v1.EventData.kind",
            "#[serde(rename_all = \"snake_case\")]",
        )
        .compile_protos(&["../../proto/openptl/v1/openptl.proto"], &["../../proto"])?;
    Ok(())
}
