//! The behaviour suite of `hakmem_tests`, once per page source: `sim::*`
//! on `SimPages`, `fixed::*` on `FixedRegion` over a host buffer,
//! `linux::*` on `LinuxPages` (real mmap). Exhaustion runs where the source
//! can be limited (not `LinuxPages`).

/// One `#[test]` per suite function, in a module per backend.
macro_rules! suite {
    ($module:ident, $backend:ty $(, $extra:ident => $f:ident)*) => {
        mod $module {
            use hakmem_tests::*;

            #[test]
            fn alloc_free() {
                suite_alloc_free::<$backend>()
            }
            #[test]
            fn zero_size() {
                suite_zero_size::<$backend>()
            }
            #[test]
            fn alignment() {
                suite_alignment::<$backend>()
            }
            #[test]
            fn realloc() {
                suite_realloc::<$backend>()
            }
            #[test]
            fn bad_frees() {
                suite_bad_frees::<$backend>()
            }
            #[test]
            fn memory_return() {
                suite_memory_return::<$backend>()
            }
            #[test]
            fn zeroed_after_reuse() {
                suite_zeroed_after_reuse::<$backend>()
            }
            $(
                #[test]
                fn $extra() {
                    $f::<$backend>()
                }
            )*
        }
    };
}

suite!(sim, Sim, exhaustion_and_recovery => suite_exhaustion_and_recovery);
suite!(fixed, Fixed, exhaustion_and_recovery => suite_exhaustion_and_recovery);
suite!(linux, Linux);
