//! The one integration-test binary: the Store suite on both backends, the API
//! on both backends, auth, bad input, the command line, the deploy files and the
//! web pages in a real browser.

mod api;
mod auth;
mod browser;
mod bus;
mod bad_input;
mod cli;
mod deploy;
mod dialog;
mod embed;
mod generate;
mod intents;
mod kb;
mod models;
mod replicas;
mod routing;
mod scenarios;
mod store;
mod ws;

/// Runs each listed `async fn(TestApp)` against a server on Postgres and on SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(aicc_tests::spawn_app(aicc_tests::Backend::Postgres).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(aicc_tests::spawn_app(aicc_tests::Backend::Sqlite).await).await;
                }
            )*
        }
    };
}
