//! Engine integration tests: save and load through the public Rust API, on the shipped demo store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use _ocitar::engine::archive::read::Input;
use _ocitar::engine::save::{IndexShape, SaveOptions};
use _ocitar::engine::{fs, inspect, load, save, Error, Progress};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-store")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ocitar-engine-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn save_bytes(
    store: &Path,
    refs: &[&str],
    platforms: &[&str],
    index: IndexShape,
) -> Result<Vec<u8>, Error> {
    let opts = SaveOptions {
        refs: refs.iter().map(ToString::to_string).collect(),
        platforms: platforms.iter().map(ToString::to_string).collect(),
        index,
        prefer: Some("linux/amd64".into()),
        compression: None,
    };
    save::save(
        store,
        &opts,
        Vec::new(),
        Path::new("<test>"),
        &mut Progress::none(),
    )
    .map(|(_, v)| v)
}

#[test]
fn save_load_save_is_byte_identical_for_every_shape() {
    let dir = tmp("roundtrip");
    for (i, shape) in [IndexShape::Keep, IndexShape::Subset, IndexShape::Manifest]
        .into_iter()
        .enumerate()
    {
        let first = save_bytes(&demo(), &["demo:1.0"], &["linux/arm64"], shape).unwrap();
        let store = dir.join(format!("s{i}"));
        let report = load::load(
            Input::Bytes(Arc::new(first.clone())),
            &store,
            &[],
            &mut Progress::none(),
        )
        .unwrap();
        assert_eq!(report.images.len(), 1);
        assert_eq!(report.images[0].names, ["demo:1.0"]);
        let again = save_bytes(&store, &["demo:1.0"], &[], shape).unwrap();
        assert_eq!(first, again, "{shape:?}");
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_platform_is_an_error_naming_what_is_there() {
    let e = save_bytes(&demo(), &["tools:0.3"], &["linux/arm/v7"], IndexShape::Keep).unwrap_err();
    match e {
        Error::PlatformNotFound {
            image,
            missing,
            available,
        } => {
            assert_eq!(image, "tools:0.3");
            assert_eq!(missing, ["linux/arm/v7"]);
            assert_eq!(available, ["linux/amd64", "linux/arm64"]);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn failed_load_leaves_no_store_behind() {
    let dir = tmp("failed");
    let archive = save_bytes(&demo(), &["demo:1.0"], &["linux/amd64"], IndexShape::Keep).unwrap();
    let store = dir.join("new");
    let e = load::load(
        Input::Bytes(Arc::new(archive)),
        &store,
        &["linux/s390x".into()],
        &mut Progress::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::PlatformNotFound { .. }), "{e}");
    assert!(!fs::exists(&store).unwrap());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn inspect_and_verify_agree_on_the_demo_store() {
    let inv = inspect::inspect(&demo()).unwrap();
    let checked = inspect::verify(&demo(), &mut Progress::none()).unwrap();
    assert!(checked.verified && !inv.verified);
    assert_eq!(inv.blobs, checked.blobs);
    let names: Vec<_> = inv.images.iter().map(|i| i.names.clone()).collect();
    assert_eq!(
        names,
        [
            vec!["demo:1.0".to_string(), "demo:latest".to_string()],
            vec!["tools:0.3".to_string()]
        ]
    );
    let platforms: Vec<_> = inv.images[0]
        .platforms
        .iter()
        .map(|p| p.platform.as_str())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    assert!(
        inv.shared_bytes > 0,
        "demo and tools share their base layer"
    );
}
