//! A cache's pages: the list and the cache page with its paths (`pages`), its settings and
//! access (`settings`, `trust`), and its storage card (`storage`, `pins`).

pub(super) mod pages;
pub(super) mod pins;
pub(super) mod settings;
pub(super) mod storage;
pub(super) mod trust;
