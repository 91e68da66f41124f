//! Where the importers put their findings about one file.

use junction_model::{Diagnostic, Severity};

use crate::ptr::Ptr;

/// Collects the diagnostics of one source file.
#[derive(Debug)]
pub(crate) struct Sink {
    file: String,
    diags: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            diags: Vec::new(),
        }
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// A warning at `at`: reported, the connector still loads.
    pub(crate) fn warn(&mut self, code: &'static str, at: &Ptr<'_>, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(
            Severity::Warning,
            code,
            self.file.clone(),
            at.render(),
            message,
        ));
    }

    /// An error at `at`: the connector is rejected.
    pub(crate) fn error(&mut self, code: &'static str, at: &Ptr<'_>, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(
            Severity::Error,
            code,
            self.file.clone(),
            at.render(),
            message,
        ));
    }

    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    pub(crate) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }
}
