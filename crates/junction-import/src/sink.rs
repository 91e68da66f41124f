//! Where the importers put their findings about one file.

use junction_model::{Diagnostic, Severity};

use crate::ptr::Ptr;

/// Collects the diagnostics of one source file.
#[derive(Debug)]
pub(crate) struct Sink {
    file: String,
    diags: Vec<Diagnostic>,
    /// For diagnostics about a character inside a string value: (diagnostic index,
    /// character offset in the decoded string).
    offsets: Vec<(usize, usize)>,
}

impl Sink {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            diags: Vec::new(),
            offsets: Vec::new(),
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

    /// A warning about character `offset` (0-based, decoded) of the string value at `at`;
    /// its column is that character's when the file is located.
    pub(crate) fn warn_at_char(
        &mut self,
        code: &'static str,
        at: &Ptr<'_>,
        message: impl Into<String>,
        offset: Option<usize>,
    ) {
        if let Some(offset) = offset {
            self.offsets.push((self.diags.len(), offset));
        }
        self.warn(code, at, message);
    }

    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    #[cfg(test)]
    pub(crate) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }

    /// The diagnostics, each with the character offset it is about (see
    /// [`Sink::warn_at_char`]).
    pub(crate) fn into_parts(self) -> Vec<(Diagnostic, Option<usize>)> {
        let mut offsets = self.offsets.into_iter().peekable();
        self.diags
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let offset = offsets.next_if(|(at, _)| *at == i).map(|(_, o)| o);
                (d, offset)
            })
            .collect()
    }
}
