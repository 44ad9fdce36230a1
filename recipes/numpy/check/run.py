# Run a componentize-py component's wasi:cli/run export under wasmtime (PyPI wasmtime).
# usage: python run.py app.wasm
import sys, wasmtime, wasmtime.component as c
cfg = wasmtime.Config()
eng = wasmtime.Engine(cfg)
comp = c.Component.from_file(eng, sys.argv[1])
store = wasmtime.Store(eng)
w = wasmtime.WasiConfig(); w.inherit_stdout(); w.inherit_stderr()
store.set_wasi(w)
lk = c.Linker(eng); lk.add_wasip2()
inst = lk.instantiate(store, comp)
idx = inst.get_export_index(store, "wasi:cli/run@0.2.0")
f = inst.get_func(store, inst.get_export_index(store, "run", idx))
print("result:", f(store))
