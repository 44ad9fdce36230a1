"""Run the check component under wasmtime-py (pip install wasmtime componentize-py==0.25.1).

    mkdir site && (cd site && unzip ../taipan_crashtest-1.0-cp314-cp314-wasi_0_0_0_wasm32.whl)
    componentize-py -d <componentize-py crate>/wit -w wasi:cli/command@0.2.0 \
        componentize app -p check -p site -o check.wasm
    python run.py check.wasm answer|boom|abort|trap|grow [MB]|spin

grow runs with a 256 MiB store memory limit; spin is interrupted by an epoch bump after 2 s.
"""
import sys, threading, time
import wasmtime
from wasmtime import component as cm

path, what = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "answer")
cfg = wasmtime.Config()
cfg.epoch_interruption = True
engine = wasmtime.Engine(cfg)
linker = cm.Linker(engine)
linker.add_wasip2()
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.inherit_stdout()
wasi.inherit_stderr()
wasi.env = [("CRASHTEST", what), ("MB", sys.argv[3] if len(sys.argv) > 3 else "8")]
store.set_wasi(wasi)
store.set_limits(memory_size=256 << 20)
store.set_epoch_deadline(1)
inst = linker.instantiate(store, cm.Component.from_file(engine, path))
run = inst.get_func(store, inst.get_export_index(
    store, "run", inst.get_export_index(store, "wasi:cli/run@0.2.0")))
if what == "spin":
    threading.Timer(2.0, engine.increment_epoch).start()
t = time.monotonic()
try:
    print(f"[host] run() returned {run(store)!r}")
except wasmtime.WasmtimeError as e:  # a trap in a component call
    print(f"[host] trapped after {time.monotonic() - t:.2f}s; host alive:\n{e}")
