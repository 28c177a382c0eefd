//! Generates the protobuf types and the gRPC service from `proto/` (needs
//! `protoc`: Debian's `protobuf-compiler`, or `PROTOC=/path/to/protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_build::configure()
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
