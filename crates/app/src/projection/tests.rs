//! Tests of the projection: runner, refresh, snapshots and the caches.

use super::snapshots::prepare_snapshot;
use super::*;

fn stored(position: u64, stream: &str) -> StoredRecord {
    StoredRecord {
        position,
        stream_id: stream.to_string(),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        event_type: "tracking_note_added".to_string(),
        schema_version: 1,
        recorded_at: Utc::now(),
        actor: "test".to_string(),
        payload: Vec::new(),
    }
}

#[test]
fn a_history_read_back_never_takes_another_streams_record() {
    let own = vec![stored(3, "A"), stored(7, "A")];
    assert_eq!(own_records("A", Ok(own.clone())).unwrap(), own);
    let mixed = vec![stored(3, "A"), stored(5, "B")];
    let refused = own_records("A", Ok(mixed)).unwrap_err().to_string();
    assert!(refused.contains("position 5"), "{refused}");
    assert!(!refused.contains('B'), "{refused}");
}

#[test]
fn a_snapshot_of_a_newer_format_is_ignored_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.snapshot");
    let config = RulesConfig::defaults();
    let mut header = snapshot::Header::new(
        &config,
        1,
        uuid::Uuid::from_u128(7),
        chrono::NaiveDate::from_ymd_opt(2025, 4, 7).unwrap(),
        0,
    );
    snapshot::write(&path, &header, std::iter::empty()).unwrap();
    assert!(prepare_snapshot(&path, &config).is_ok());
    header.format = snapshot::FORMAT + 1;
    snapshot::write(&path, &header, std::iter::empty()).unwrap();
    let refused = prepare_snapshot(&path, &config).err().expect("ignored");
    assert!(
        refused
            .to_string()
            .contains(&format!("format {}", snapshot::FORMAT + 1)),
        "{refused}"
    );
}
