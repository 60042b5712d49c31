//! Reports rendered from a run's results folder (`results.json` and the `.hlog` files).
//!
//! This crate reads only the results files, never a live run, so any old run can be re-rendered.
//! Charts, HTML and Markdown arrive with the reports work; until then the harness prints its
//! terminal table and writes results.json, which is what this crate will read.
