//! Checks each built Spin component (dist/spin/*.wasm, from `scripts/build spin`) against what
//! Spin 4.0 links: it must export the WASIp3 handler (`wasi:http/handler@0.3.0-rc-2026-03-15`,
//! the release candidate Spin 4.0 runs) and import only WASI 0.2 interfaces (the standard
//! library's), that release candidate's interfaces, Spin's key-value and variables 3.0
//! interfaces, and the keyvalue draft2 interfaces Spin grants under `key_value_stores`. The e2e
//! suite runs them on Spin itself; this names the interface when a dependency brings in one
//! Spin does not provide.

use e2e::repo_root;
use wasmparser::{Parser, Payload};

/// Interface-level imports and exports (`ns:pkg/iface@version`). Nested components inside the
/// binary also have import sections, for types (`import-type-…`); those are not host imports.
fn component_interfaces(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ComponentImportSection(section)) => {
                for import in section.into_iter().flatten() {
                    if import.name.0.contains(':') {
                        imports.push(import.name.0.to_owned());
                    }
                }
            }
            Ok(Payload::ComponentExportSection(section)) => {
                for export in section.into_iter().flatten() {
                    if export.name.0.contains(':') {
                        exports.push(export.name.0.to_owned());
                    }
                }
            }
            Ok(_) => {}
            Err(e) => panic!("not a valid wasm component: {e}"),
        }
    }
    (imports, exports)
}

/// The WASI 0.3 release candidate Spin 4.0 runs (and spin-sdk 6.0 binds).
const WASIP3_RC: &str = "0.3.0-rc-2026-03-15";

fn allowed_import(name: &str) -> bool {
    const SPIN: &[&str] = &[
        "spin:key-value/key-value@3.0.0",
        "spin:variables/variables@3.0.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
    ];
    SPIN.contains(&name)
        || (name.starts_with("wasi:")
            && (name.contains("@0.2.") || name.ends_with(&format!("@{WASIP3_RC}")))
            && !name.contains("draft"))
}

#[test]
fn every_spin_component_exports_the_http_handler_and_imports_only_what_spin_provides() {
    let dir = repo_root().join("dist/spin");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/build spin", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .collect();
    assert!(!entries.is_empty(), "no components in {}", dir.display());
    for entry in entries {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let (imports, exports) = component_interfaces(&bytes);
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            exports
                .iter()
                .any(|e| *e == format!("wasi:http/handler@{WASIP3_RC}")),
            "{name} exports {exports:?}"
        );
        assert!(
            imports
                .iter()
                .any(|i| *i == format!("wasi:http/types@{WASIP3_RC}")),
            "{name}: parser found no wasi:http import ({imports:?})"
        );
        for import in &imports {
            assert!(
                allowed_import(import),
                "{name} imports {import}, which Spin does not provide"
            );
        }
    }
}

#[test]
fn the_import_allow_list_rejects_what_spin_lacks() {
    assert!(allowed_import("wasi:cli/stdout@0.2.12"));
    assert!(allowed_import("wasi:http/types@0.3.0-rc-2026-03-15"));
    assert!(allowed_import("spin:variables/variables@3.0.0"));
    assert!(!allowed_import("wasi:http/types@0.3.0-rc-2025-09-16"));
    assert!(!allowed_import("wasi:http/types@0.3.0"));
    assert!(!allowed_import("fermyon:spin/variables@2.0.0"));
    assert!(!allowed_import("fermyon:spin/llm@2.0.0"));
    assert!(!allowed_import("spin:postgres/postgres@4.0.0"));
}

/// The initial size, in 64 KiB pages, of every memory the component's core modules define.
fn memory_pages(bytes: &[u8]) -> Vec<u64> {
    let mut pages = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Ok(Payload::MemorySection(section)) = payload {
            pages.extend(section.into_iter().flatten().map(|m| m.initial));
        }
    }
    pages
}

/// Spin resets a component's whole linear memory after every request and a request that grows
/// it remaps pages, so the memory is linked at the size .cargo/config.toml gives (measured
/// there). A link that lost the flag would cost every request, silently.
#[test]
fn every_spin_component_starts_with_the_configured_linear_memory() {
    let config = std::fs::read_to_string(repo_root().join(".cargo/config.toml"))
        .unwrap_or_else(|e| panic!(".cargo/config.toml: {e}"));
    let bytes: u64 = config
        .split("--initial-memory=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no --initial-memory=<bytes> in .cargo/config.toml"));
    assert_eq!(bytes % 65536, 0, "--initial-memory must be whole pages");
    let want = bytes / 65536;
    let dir = repo_root().join("dist/spin");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/build spin", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pages = memory_pages(&std::fs::read(entry.path()).unwrap_or_default());
        assert_eq!(
            pages,
            [want],
            "{name}: memories of {pages:?} pages, .cargo/config.toml says {want}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no components in {}", dir.display());
}
