// The boundary where usmp calls an application's callable.
//
// The code map (runtime/codemap.h) classifies a function by the outermost
// name of its symbol, and the compiler inlines a lambda's body into whatever
// calls it.  Called from a function of namespace usmp (thread_create's entry,
// run()'s wrapper), a user's CPU-bound loop would become part of a usmp
// symbol and never be preempted asynchronously: under full preemption it
// would starve every other thread of its CPU, the ithreads and the softclock
// included.  Called through usmp_app_call, which is at global scope and never
// inlined, the body lands in a symbol the map classifies as application code.
//
// Only application callables go through it: usmp code inlined here would
// become preemptible at any instruction.  (The name is not extern "C", so the
// usmp_* rule for C symbols does not apply to it.)  A callable the
// application stores in a std::function is still invoked by std's invoker,
// into which the compiler may inline it: that code is then preempted at
// preemption points only.
#pragma once

#include <type_traits>

template <class F>
[[gnu::noinline]] std::invoke_result_t<F &>
usmp_app_call(F &f)
{
	return f();
}
