use super::*;
use std::io::Read;

fn entry_for(digest: &Digest, size: u64) -> Entry {
    Entry {
        digest: Some(digest.to_hex()),
        size,
        status: 200,
        content_type: Some("application/octet-stream".into()),
        etag: None,
        last_modified: None,
        fetched_at: now_ms(),
        immutable: true,
        upstream_url: "http://127.0.0.1:1/f".into(),
        headers: vec![],
    }
}

fn put_blob(store: &Store, bytes: &[u8]) -> Digest {
    let mut temp = store.temp_blob().expect("temp");
    temp.write_all(bytes).expect("write");
    let digest = Digest::of(bytes);
    store
        .commit_blob(temp, &digest, bytes.len() as u64)
        .expect("commit");
    digest
}

#[test]
fn committed_blob_is_readable_and_entry_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: None,
        shared: None,
    };
    let digest = {
        let store = Store::open(opts.clone()).expect("open");
        let digest = put_blob(&store, b"hello wheel");
        store
            .put_entry("pypi", "files/x/x-1.whl", &entry_for(&digest, 11))
            .expect("put");
        digest
    };
    let store = Store::open(opts).expect("reopen");
    let entry = store
        .lookup("pypi", "files/x/x-1.whl")
        .expect("lookup")
        .expect("entry kept");
    assert_eq!(entry.blob_digest(), Some(digest));
    let mut blob = store.open_blob(&digest).expect("open").expect("blob kept");
    let mut body = String::new();
    blob.file.read_to_string(&mut body).expect("read");
    assert_eq!(body, "hello wheel");
    assert_eq!(store.usage().bytes, 11);
}

#[test]
fn dropped_temp_blob_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: None,
        shared: None,
    })
    .expect("open");
    let path = {
        let mut temp = store.temp_blob().expect("temp");
        temp.write_all(b"half a download").expect("write");
        temp.path().to_path_buf()
    };
    assert!(
        !path.exists(),
        "an uncommitted temporary file must be removed when dropped"
    );
    assert_eq!(store.usage().blobs, 0);
}

#[test]
fn leftover_temp_files_are_cleaned_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
    std::fs::write(dir.path().join("tmp/crashed.part"), b"partial").expect("write");
    let _store = Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: None,
        shared: None,
    })
    .expect("open");
    assert!(!dir.path().join("tmp/crashed.part").exists());
}

#[test]
fn eviction_removes_least_recently_used_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: Some(25_000),
        shared: None,
    })
    .expect("open");
    let a = put_blob(&store, &[1u8; 10_000]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = put_blob(&store, &[2u8; 10_000]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    // Reading `a` makes `b` the least recently used.
    assert!(store.open_blob(&a).expect("open").is_some());
    std::thread::sleep(std::time::Duration::from_millis(5));
    let c = put_blob(&store, &[3u8; 10_000]);
    let report = store.evict_if_needed().expect("evict");
    assert_eq!(
        report,
        EvictionReport {
            blobs: 1,
            bytes: 10_000
        }
    );
    assert!(store.has_blob(&a));
    assert!(!store.has_blob(&b));
    assert!(store.has_blob(&c));
    assert!(store.open_blob(&b).expect("open").is_none());
    assert!(store.usage().bytes <= 25_000);
}

#[test]
fn missing_blob_file_is_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: None,
        shared: None,
    })
    .expect("open");
    let digest = put_blob(&store, b"soon gone");
    let hex = digest.to_hex();
    std::fs::remove_file(dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex)).expect("rm");
    assert!(store.open_blob(&digest).expect("open").is_none());
    assert_eq!(store.usage().blobs, 0);
}

#[test]
fn prefix_removal_and_listing_stay_within_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
        max_size: None,
        shared: None,
    })
    .expect("open");
    let d = put_blob(&store, b"x");
    for key in ["simple/a/", "simple/ab/", "files/a/a.whl"] {
        store
            .put_entry("pypi", key, &entry_for(&d, 1))
            .expect("put");
        store
            .put_entry("pypi2", key, &entry_for(&d, 1))
            .expect("put");
    }
    let listed: Vec<String> = store
        .list_entries("pypi", "simple/", 10)
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        listed,
        vec!["simple/a/".to_string(), "simple/ab/".to_string()]
    );
    assert_eq!(store.remove_prefix("pypi", "simple/").expect("rm"), 2);
    assert!(store.lookup("pypi", "simple/a/").expect("lookup").is_none());
    assert!(store
        .lookup("pypi", "files/a/a.whl")
        .expect("lookup")
        .is_some());
    assert!(store
        .lookup("pypi2", "simple/a/")
        .expect("lookup")
        .is_some());
}

fn negative_at(fetched_at: u64) -> Entry {
    Entry {
        digest: None,
        size: 0,
        status: 404,
        content_type: None,
        etag: None,
        last_modified: None,
        fetched_at,
        immutable: false,
        upstream_url: "http://127.0.0.1:1/missing".into(),
        headers: vec![],
    }
}

fn open_at(dir: &std::path::Path, max_size: Option<u64>) -> Arc<Store> {
    Store::open(StoreOptions {
        root: dir.to_path_buf(),
        max_size,
        shared: None,
    })
    .expect("open")
}

#[test]
fn negative_entries_beyond_the_cap_drop_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path(), None);
    store.set_max_negative_entries(3);
    for i in 0..5u64 {
        store
            .put_entry("go", &format!("mod/m{i}"), &negative_at(1000 + i))
            .expect("put");
    }
    assert_eq!(store.usage().negative_entries, 3);
    assert!(store.lookup("go", "mod/m0").expect("lookup").is_none());
    assert!(store.lookup("go", "mod/m1").expect("lookup").is_none());
    assert!(store.lookup("go", "mod/m4").expect("lookup").is_some());
    // Replacing a negative entry by a positive one leaves the count in step.
    let digest = put_blob(&store, b"now it exists");
    store
        .put_entry("go", "mod/m4", &entry_for(&digest, 13))
        .expect("put");
    assert_eq!(store.usage().negative_entries, 2);
    drop(store);
    let store = open_at(dir.path(), None);
    assert_eq!(store.usage().negative_entries, 2, "counted again at open");
}

#[test]
fn old_negative_entries_are_pruned_by_age_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path(), None);
    let now = now_ms();
    store
        .put_entry("go", "old", &negative_at(now - 7_200_000))
        .expect("put");
    for i in 0..4 {
        store
            .put_entry("go", &format!("new{i}"), &negative_at(now - 10 + i))
            .expect("put");
    }
    let before = store.usage().index_bytes;
    let report = store
        .prune_negatives(std::time::Duration::from_secs(3600), 2)
        .expect("prune");
    assert_eq!(report.entries, 3, "the old one by age, two more by count");
    assert_eq!(store.usage().negative_entries, 2);
    assert!(store.lookup("go", "new3").expect("lookup").is_some());
    assert!(store.lookup("go", "new1").expect("lookup").is_none());
    assert!(store.usage().index_bytes < before);
}

#[test]
fn index_counts_in_max_size_and_negative_entries_go_before_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path(), Some(200_000));
    let digest = put_blob(&store, &[9u8; 50_000]);
    store
        .put_entry("pypi", "files/a/a.whl", &entry_for(&digest, 50_000))
        .expect("put");
    let long = "x".repeat(1000);
    let mut i = 0;
    while !store.over_max_size() {
        store
            .put_entry(
                "pypi",
                &format!("simple/{long}{i}/"),
                &negative_at(1000 + i),
            )
            .expect("put");
        i += 1;
        assert!(i < 10_000, "the index never counted");
    }
    store.evict_if_needed().expect("evict");
    let usage = store.usage();
    assert!(usage.bytes + usage.index_bytes <= 180_000, "{usage:?}");
    assert!(usage.negative_entries > 0 && usage.negative_entries < i);
    assert!(
        store.has_blob(&digest),
        "the blob outlives the negative entries"
    );
    assert!(store
        .lookup("pypi", &format!("simple/{long}0/"))
        .expect("lookup")
        .is_none());
}

#[test]
fn evicting_a_blob_removes_the_entries_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path(), None);
    let digest = put_blob(&store, b"evicted");
    for key in ["a", "b"] {
        store
            .put_entry("npm", key, &entry_for(&digest, 7))
            .expect("put");
    }
    let with_entries = store.usage().index_bytes;
    store.evict_down_to(0).expect("evict");
    assert!(store.list_entries("npm", "", 10).expect("list").is_empty());
    assert!(store.usage().index_bytes < with_entries);
}

#[cfg(target_os = "linux")]
#[test]
fn free_disk_space_is_known_on_linux() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path(), None);
    assert!(store.free_bytes().is_some_and(|free| free > 0));
}
