//! Panics inside a simulated run, caught and kept: a task that panics (in the proxy, in tower,
//! in a service model) is caught by the runtime and the run goes on, so without this a
//! panic could end as one request's `upstream_reset` in a report that PASSes. Each pass
//! collects the panics raised on its thread; [`crate::run`] fails the run on any, and the
//! binary exits with its own code for them.
//!
//! Not a recovery mechanism: the run's numbers are not to be trusted once anything panicked.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// `Some` while a pass runs on this thread: the panics seen so far.
    static CAUGHT: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Run `f`, returning what it returned and every panic raised on this thread meanwhile (as
/// "message at file:line"), in order. The process's previous panic hook still runs (the
/// message is printed as usual).
pub(crate) fn catching<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = CAUGHT.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut()
                    && let Some(seen) = c.as_mut()
                {
                    let what = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    let at = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    seen.push(format!("{what}{at}"));
                }
            });
            previous(info);
        }));
    });
    let outer = CAUGHT.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let caught = CAUGHT.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (out, caught.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_panics_is_caught_even_though_the_runtime_goes_on() {
        let (finished, caught) = catching(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let task = tokio::spawn(async { panic!("inside a task") });
                assert!(task.await.unwrap_err().is_panic());
                "the run went on"
            })
        });
        assert_eq!(finished, "the run went on");
        assert_eq!(caught.len(), 1, "{caught:?}");
        assert!(caught[0].starts_with("inside a task at "), "{caught:?}");
        // Outside `catching`, nothing is kept.
        let (_, none) = catching(|| ());
        assert!(none.is_empty());
    }
}
