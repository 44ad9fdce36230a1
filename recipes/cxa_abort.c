/* __cxa_allocate_exception and __cxa_throw for C++ extension modules built with
 * -fexceptions for wasm32-wasip2 (recipes/build.sh links this archive into every module).
 *
 * componentize-py's libc++abi is built without exceptions, so it defines neither. Code
 * compiled with -fexceptions but without -fwasm-exceptions has no landing pads: LLVM
 * lowers every invoke to a call, so no catch block can ever run. A throw therefore cannot
 * be handled; what it can do is say what was thrown and stop. abort() traps the wasm
 * instance: the host ends the request with a 500, logs the trap (with this line on the
 * worker's stderr) and gives the next request a clean sandbox. */
#include <stdio.h>
#include <stdlib.h>

/* The Itanium C++ ABI's std::type_info: a vtable pointer, then the mangled type name. */
struct type_info { const void *vtable; const char *name; };

void *__cxa_allocate_exception(size_t size) {
  void *p = malloc(size);
  if (!p) abort();
  return p;
}

_Noreturn void __cxa_throw(void *exception, struct type_info *type, void (*destructor)(void *)) {
  (void)exception; (void)destructor;
  fprintf(stderr, "C++ exception %s thrown in a WASI extension module (built without "
                  "exception support): aborting\n", type && type->name ? type->name : "?");
  fflush(stderr);
  abort();
}
