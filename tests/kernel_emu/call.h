// Calling an emulated kernel with cuLaunchKernel-style parameters (an array of pointers
// to each argument), from the kernel's own parameter list; the wrappers build.rs
// generates register every entry point with this.

#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace rill_emu {

// `sizes`: the byte size of each of the `arity` parameters (checked at every launch).
void add_kernel(const char* name, void (*call)(void* fn, void** params), void* fn,
                const size_t* sizes, size_t arity);

template <class F>
struct Call;

template <class... A>
struct Call<void (*)(A...)> {
    template <size_t... I>
    static void go(void* fn, void** p, std::index_sequence<I...>) {
        reinterpret_cast<void (*)(A...)>(fn)(*static_cast<std::remove_cv_t<A>*>(p[I])...);
    }
    static void call(void* fn, void** p) { go(fn, p, std::index_sequence_for<A...>{}); }
    static constexpr size_t arity = sizeof...(A);
    static constexpr size_t sizes[sizeof...(A) + 1] = {sizeof(std::remove_cv_t<A>)..., 0};
};

}  // namespace rill_emu

#define RILL_EMU_ADD(ns, name)                                                      \
    ::rill_emu::add_kernel(#name, &::rill_emu::Call<decltype(&ns::name)>::call,    \
                           reinterpret_cast<void*>(&ns::name),                     \
                           ::rill_emu::Call<decltype(&ns::name)>::sizes,           \
                           ::rill_emu::Call<decltype(&ns::name)>::arity)
