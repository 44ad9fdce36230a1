//! `Component::with_snapshot` (Taipan's wasmtime patch) on a small
//! component: the base's code runs with the snapshot's memory and globals,
//! the base itself is unchanged, and a snapshot that does not fit says why.

use std::io::Write as _;

use wasmtime::component::{
    Component, Linker, Snapshot, SnapshotGlobal, SnapshotMemory, SnapshotValue,
};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// One module with a memory and a mutable global; `get` returns the global
/// plus the byte at address 0 plus the byte at 70,000 (the second page).
const BASE: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1)
    (global $g (mut i32) (i32.const 1))
    (data (i32.const 0) "\05")
    (func (export "get") (result i32)
      (i32.add
        (i32.add (global.get $g) (i32.load8_u (i32.const 0)))
        (if (result i32) (i32.gt_u (memory.size) (i32.const 1))
          (then (i32.load8_u (i32.const 70000)))
          (else (i32.const 0))))))
  (core instance $i (instantiate $m))
  (func (export "get") (result u32) (canon lift (core func $i "get")))
)
"#;

fn engines() -> Vec<(&'static str, Engine)> {
    let mut pooled = Config::new();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    vec![
        ("on demand", Engine::default()),
        ("pooling", Engine::new(&pooled).unwrap()),
    ]
}

fn call_get(engine: &Engine, component: &Component) -> u32 {
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, component)
        .unwrap();
    let get = instance
        .get_typed_func::<(), (u32,)>(&mut store, "get")
        .unwrap();
    get.call(&mut store, ()).unwrap().0
}

/// A memory image file: `bytes` at their addresses, whole 4 KiB pages.
fn image(bytes: &[(usize, u8)], len: usize) -> std::fs::File {
    let mut data = vec![0u8; len];
    for &(at, b) in bytes {
        data[at] = b;
    }
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    file
}

/// Memory grown to two pages, with data in the second; `get` gives 2 + 40 + 9.
fn grown_snapshot() -> Snapshot {
    Snapshot {
        memory: Some(SnapshotMemory {
            module: 0,
            image: image(&[(0, 40), (70_000, 9)], 72 * 1024),
            pages: 2,
        }),
        globals: vec![SnapshotGlobal {
            module: 0,
            global: 0,
            value: SnapshotValue::I32(2),
        }],
    }
}

/// An idle worker drops its component and makes it again from the base
/// later: the slots its instances used (kept resident for the next
/// instance) are purged with it, and every later instance starts from the
/// snapshot, not from a zeroed or stale slot; an instance still in use keeps
/// its memory, and the base is not affected.
#[test]
fn a_dropped_snapshot_component_starts_again_from_the_snapshot() {
    for (name, engine) in engines() {
        let base = Component::new(&engine, BASE).unwrap();
        let worker = base.with_snapshot(&grown_snapshot()).unwrap();
        assert_eq!(call_get(&engine, &worker), 51, "{name}: before");
        assert_eq!(call_get(&engine, &base), 6, "{name}: the base");

        let mut store = Store::new(&engine, ());
        let live = Linker::new(&engine)
            .instantiate(&mut store, &worker)
            .unwrap();
        let get = live
            .get_typed_func::<(), (u32,)>(&mut store, "get")
            .unwrap();
        drop(worker);
        assert_eq!(get.call(&mut store, ()).unwrap().0, 51, "{name}: in use");
        for round in 0..2 {
            let worker = base.with_snapshot(&grown_snapshot()).unwrap();
            assert_eq!(call_get(&engine, &worker), 51, "{name}: after {round}");
        }
        assert_eq!(call_get(&engine, &base), 6, "{name}: the base after");
    }
}

#[test]
fn a_snapshot_runs_on_the_base_code_and_leaves_the_base_alone() {
    for (name, engine) in engines() {
        let base = Component::new(&engine, BASE).unwrap();
        assert_eq!(call_get(&engine, &base), 1 + 5, "{name}: the base");

        let worker = base.with_snapshot(&grown_snapshot()).unwrap();
        for _ in 0..3 {
            // Each instance starts from the snapshot, pooled slots included.
            assert_eq!(
                call_get(&engine, &worker),
                2 + 40 + 9,
                "{name}: the snapshot"
            );
        }
        assert_eq!(call_get(&engine, &base), 1 + 5, "{name}: the base after");
    }
}

#[test]
fn a_snapshot_that_does_not_fit_the_base_says_why() {
    let engine = Engine::default();
    let base = Component::new(&engine, BASE).unwrap();
    let global = |module, global, value| Snapshot {
        memory: None,
        globals: vec![SnapshotGlobal {
            module,
            global,
            value,
        }],
    };
    let cases = [
        (global(1, 0, SnapshotValue::I32(0)), "module 1"),
        (global(0, 7, SnapshotValue::I32(0)), "global 7"),
        (global(0, 0, SnapshotValue::I64(0)), "another type"),
        (
            Snapshot {
                memory: Some(SnapshotMemory {
                    module: 0,
                    image: image(&[(0, 1)], 4096 * 2),
                    pages: 0,
                }),
                globals: vec![],
            },
            "smaller than its image",
        ),
        (
            Snapshot {
                memory: Some(SnapshotMemory {
                    module: 0,
                    image: image(&[(0, 1)], 100),
                    pages: 1,
                }),
                globals: vec![],
            },
            "whole number of pages",
        ),
    ];
    for (snapshot, expected) in cases {
        let error = format!("{:#}", base.with_snapshot(&snapshot).err().unwrap());
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
}
