//! [`InformerConfig`]: selectors, resync, transform and list mode of one informer.

use std::time::Duration;

use crate::decode::Transform;
use crate::reflector::{InitialList, WatchErrorHandler};

/// How an informer lists, watches and stores. Defaults: no resync, paged lists of 500,
/// `managedFields` stripped (controller-runtime's recommended transform).
#[must_use]
pub struct InformerConfig<K> {
    pub(crate) resync_period: Option<Duration>,
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) keep_managed_fields: bool,
    pub(crate) transform: Option<Transform<K>>,
    pub(crate) initial_list: InitialList,
    pub(crate) page_size: i64,
    pub(crate) watch_error_handler: Option<WatchErrorHandler>,
    pub(crate) metadata_only: bool,
}

impl<K> Default for InformerConfig<K> {
    fn default() -> Self {
        Self {
            resync_period: None,
            label_selector: None,
            field_selector: None,
            keep_managed_fields: false,
            transform: None,
            initial_list: InitialList::Paged,
            page_size: 500,
            watch_error_handler: None,
            metadata_only: false,
        }
    }
}

impl<K> Clone for InformerConfig<K> {
    fn clone(&self) -> Self {
        Self {
            resync_period: self.resync_period,
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            keep_managed_fields: self.keep_managed_fields,
            transform: self.transform.clone(),
            initial_list: self.initial_list,
            page_size: self.page_size,
            watch_error_handler: self.watch_error_handler.clone(),
            metadata_only: self.metadata_only,
        }
    }
}

impl<K> std::fmt::Debug for InformerConfig<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerConfig")
            .field("resync_period", &self.resync_period)
            .field("label_selector", &self.label_selector)
            .field("field_selector", &self.field_selector)
            .field("keep_managed_fields", &self.keep_managed_fields)
            .field("transform", &self.transform.is_some())
            .field("initial_list", &self.initial_list)
            .finish_non_exhaustive()
    }
}

impl<K> InformerConfig<K> {
    /// The default resync period of handlers (`None` or zero: never).
    pub fn resync_period(mut self, period: Option<Duration>) -> Self {
        self.resync_period = period.filter(|p| !p.is_zero());
        self
    }

    /// Only objects matching this label selector.
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Only objects matching this field selector.
    pub fn field_selector(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Keep `metadata.managedFields` (stripped by default, before decoding).
    pub fn keep_managed_fields(mut self, keep: bool) -> Self {
        self.keep_managed_fields = keep;
        self
    }

    /// Applied to every object before it is stored or delivered.
    pub fn transform(mut self, transform: Transform<K>) -> Self {
        self.transform = Some(transform);
        self
    }

    /// Paged (default) or streaming initial lists.
    pub fn initial_list(mut self, mode: InitialList) -> Self {
        self.initial_list = mode;
        self
    }

    /// The page size of paged lists (default 500).
    pub fn page_size(mut self, size: i64) -> Self {
        self.page_size = size;
        self
    }

    /// Lists and watches `PartialObjectMetadata` only (for `PartialObjectMeta<T>` informers).
    pub fn metadata_only(mut self, on: bool) -> Self {
        self.metadata_only = on;
        self
    }

    /// Called with every list/watch failure (client-go's `SetWatchErrorHandler`).
    pub fn watch_error_handler(mut self, handler: WatchErrorHandler) -> Self {
        self.watch_error_handler = Some(handler);
        self
    }
}
