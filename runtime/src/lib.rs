//! switchhead-runtime: the `Session` API and its backends (runtime issue).
