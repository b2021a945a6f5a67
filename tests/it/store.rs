//! The Store conformance suite, unchanged on both backends.

mod postgres {
    aicc_store::store_conformance_suite!(aicc_tests::fresh_pg_store);
}

mod sqlite {
    aicc_store::store_conformance_suite!(aicc_tests::fresh_sqlite_store);
}
