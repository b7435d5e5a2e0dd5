//! The sandbox benchmark's ClientApp as a Wasm component (the `client` world).
//!
//! The export is written out instead of `sepal_sdk::export_client_app!` so that it can
//! time its steps ([`app::handle_timed`], the same steps the SDK's export takes) and, when
//! the host grants the environment variable [`app::TIMING_ENV`], log the timings and the
//! size of its linear memory back through the `log` import as one
//! [`app::Timings::log_line`].

pub mod app;

#[cfg(target_arch = "wasm32")]
mod component {
    use sepal_sdk::__private::client::exports::sepal::app::client_app::Guest;
    use sepal_sdk::__private::client::sepal::app::types::AppError as WitAppError;

    use crate::app;

    struct BenchClient;

    impl Guest for BenchClient {
        fn handle(message: Vec<u8>, context: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), WitAppError> {
            let (reply, context, timings) = app::handle_timed(&app::client_app(), message, &context)
                .map_err(|e| WitAppError { code: e.code, message: e.message })?;
            if std::env::var_os(app::TIMING_ENV).is_some() {
                let memory = std::arch::wasm32::memory_size::<0>() as u64 * 65536;
                sepal_sdk::info!("{}", timings.log_line(memory));
            }
            Ok((reply, context))
        }
    }

    sepal_sdk::__private::client::export_client!(BenchClient with_types_in sepal_sdk::__private::client);
}
