//! Rust-side checks of the C ABI: the structural rules that the C tests
//! (ffi/tests-c, run by ffi/run-c-tests.sh) cannot see, plus a smoke test
//! through the `extern "C"` functions.

use std::ffi::CStr;
use std::path::Path;
use std::ptr;

use kvfeed_ffi::*;

fn source_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

fn header() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/kvfeed.h");
    std::fs::read_to_string(path).expect("include/kvfeed.h")
}

/// `(file, function name, first statement of its body)` of every `extern "C" fn`.
fn entry_points() -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (file, text) in source_files() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("extern \"C\" fn ") {
            let after = &rest[i + "extern \"C\" fn ".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The body starts at the first `{` after the signature's `)`.
            let sig_end = after.find(")").unwrap();
            let body_start = sig_end + after[sig_end..].find('{').unwrap() + 1;
            let first = after[body_start..].trim_start();
            let first = first[..first.find('\n').unwrap_or(first.len())].to_string();
            found.push((file.clone(), name, first));
            rest = &after[body_start..];
        }
    }
    found
}

#[test]
fn every_entry_point_runs_inside_the_panic_guard() {
    let entries = entry_points();
    assert!(entries.len() >= 18, "found only {entries:?}");
    for (file, name, first) in &entries {
        assert!(
            ["guard(", "guard_or(", "guard_void("]
                .iter()
                .any(|g| first.trim_start_matches("status::").starts_with(g)),
            "{file}: `{name}` must run its whole body in the panic guard, starts with `{first}`"
        );
    }
}

#[test]
fn every_entry_point_is_declared_in_the_header() {
    let h = header();
    for (file, name, _) in entry_points() {
        if name == "kvfeed_test_panic" {
            assert!(
                !h.contains(&name),
                "the test hook must stay out of the header"
            );
            continue;
        }
        assert!(
            h.contains(&format!("{name}(")),
            "{file}: `{name}` missing from include/kvfeed.h"
        );
    }
}

#[test]
fn version_macros_and_string_agree_with_cargo_toml() {
    let h = header();
    for (macro_name, value) in [
        ("KVFEED_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("KVFEED_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("KVFEED_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            h.contains(&format!("#define {macro_name} {value}\n")),
            "include/kvfeed.h: {macro_name} is not {value} (run ffi/check-header.sh --update)"
        );
    }
    assert_eq!(
        (
            KVFEED_VERSION_MAJOR,
            KVFEED_VERSION_MINOR,
            KVFEED_VERSION_PATCH
        ),
        (
            env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_MINOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_PATCH").parse().unwrap()
        )
    );
    // SAFETY: kvfeed_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(kvfeed_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn kind_bits_are_the_cores() {
    use kvfeed::{Kind, Kinds};
    use kvfeed_ffi::watcher::*;
    assert_eq!(Kinds::CREATE.bits() as u32, KVFEED_KIND_CREATE);
    assert_eq!(Kinds::UPDATE.bits() as u32, KVFEED_KIND_UPDATE);
    assert_eq!(Kinds::DELETE.bits() as u32, KVFEED_KIND_DELETE);
    assert_eq!(Kind::Delete.mask(), Kinds::DELETE);
    assert_eq!(KVFEED_KIND_SNAPSHOT_DONE & Kinds::ALL.bits() as u32, 0);
}

#[test]
fn status_str_accepts_any_int() {
    for (code, want) in [
        (0, "ok"),
        (1, "not found"),
        (10, "unknown status"),
        (-5, "unknown status"),
    ] {
        // SAFETY: a static NUL-terminated string, never NULL.
        let s = unsafe { CStr::from_ptr(kvfeed_status_str(status::kvfeed_status_arg(code))) };
        assert_eq!(s.to_str().unwrap(), want);
    }
}

#[test]
fn smoke_put_get_watch_through_the_c_functions() {
    use kvfeed_status::*;
    // SAFETY: every pointer passed is valid for its use, as the header requires.
    unsafe {
        let mut store = ptr::null_mut();
        assert_eq!(kvfeed_store_new(ptr::null(), &mut store), KVFEED_OK);
        let mut w = ptr::null_mut();
        assert_eq!(kvfeed_watch_new(store, ptr::null(), &mut w), KVFEED_OK);
        let mut seq = 0;
        assert_eq!(
            kvfeed_put(store, b"k".as_ptr(), 1, b"v".as_ptr(), 1, &mut seq),
            KVFEED_OK
        );
        assert_eq!(seq, 1);
        let mut buf = kvfeed_buf {
            ptr: ptr::null_mut(),
            len: 0,
        };
        let mut version = 0;
        assert_eq!(
            kvfeed_get(store, b"k".as_ptr(), 1, &mut buf, &mut version),
            KVFEED_OK
        );
        assert_eq!(
            (std::slice::from_raw_parts(buf.ptr, buf.len), version),
            (&b"v"[..], 1)
        );
        kvfeed_buf_free(&mut buf);
        assert!(buf.ptr.is_null());

        let mut ev = std::mem::MaybeUninit::<kvfeed_event>::uninit();
        assert_eq!(kvfeed_watcher_next(w, 0, ev.as_mut_ptr()), KVFEED_OK);
        let ev = ev.assume_init();
        assert_eq!((ev.seq, ev.kind), (1, watcher::KVFEED_KIND_CREATE));
        assert_eq!(std::slice::from_raw_parts(ev.key, ev.key_len), b"k");

        kvfeed_store_free(store); // the watcher keeps the feed alive
        let mut ev2 = std::mem::MaybeUninit::<kvfeed_event>::uninit();
        assert_eq!(kvfeed_watcher_next(w, -1, ev2.as_mut_ptr()), KVFEED_CLOSED);
        kvfeed_watcher_free(w);
        kvfeed_watcher_free(ptr::null_mut());
        kvfeed_store_free(ptr::null_mut());
    }
}
