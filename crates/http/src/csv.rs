//! CSV output (RFC 4180) for exports opened in spreadsheets: fields quoted
//! when needed, and text that a spreadsheet would run as a formula (`=`, `+`,
//! `-`, `@`, tab or carriage return first) prefixed with `'` so a tracking note cannot become one.

/// A CSV document being written.
pub struct Csv {
    out: String,
}

impl Csv {
    /// Starts a document with its header line.
    pub fn new(header: &[&str]) -> Csv {
        Csv::with_capacity(header, 0)
    }

    /// Starts a document with its header line, room made for `bytes`.
    pub fn with_capacity(header: &[&str], bytes: usize) -> Csv {
        let mut csv = Csv {
            out: String::with_capacity(bytes),
        };
        csv.row(header);
        csv
    }

    /// A document with its header line and a row (or more) per item,
    /// written by `write`: `slice` items at a time on every core, the
    /// slices' rows then joined in order (`bytes` a row, about).
    pub fn on_every_core<T: Sync>(
        header: &[&str],
        items: &[T],
        slice: usize,
        bytes: usize,
        write: impl Fn(&mut Csv, &T) + Sync,
    ) -> String {
        let slices: Vec<&[T]> = items.chunks(slice.max(1)).collect();
        let written = openptl_app::par_batches(&slices, |slice| {
            let mut rows = Csv {
                out: String::with_capacity(bytes * slice.len()),
            };
            for item in *slice {
                write(&mut rows, item);
            }
            Some(rows.out)
        });
        let mut csv = Csv::with_capacity(
            header,
            written.iter().map(String::len).sum::<usize>() + 1024,
        );
        for rows in &written {
            csv.out.push_str(rows);
        }
        csv.out
    }

    pub fn row<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_field(&mut self.out, field.as_ref());
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn push_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '@', '\t', '\r'])
        || (field.starts_with('-') && field.parse::<f64>().is_err());
    // Bytes, not characters: each of these is one byte in UTF-8, and no
    // byte of another character is one of them.
    let quote = formula
        || field
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        out.push_str(field);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    out.push_str(&field.replace('"', "\"\""));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut csv = Csv::new(&["a", "b"]);
        csv.row(["plain", "with, comma"]);
        csv.row(["say \"hi\"", "=HYPERLINK(\"x\")"]);
        csv.row(["-3", "-x"]);
        assert_eq!(
            csv.finish(),
            "a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\"\r\n-3,\"'-x\"\r\n"
        );
    }

    /// Written a slice at a time on every core, a document is the one
    /// written row by row, whatever the slice.
    #[test]
    fn a_document_written_on_every_core_is_the_same() {
        let items: Vec<String> = (0..23).map(|i| format!("row {i}, \"{i}\"")).collect();
        let mut one = Csv::new(&["text", "n"]);
        for (i, item) in items.iter().enumerate() {
            one.row([item.as_str(), &i.to_string()]);
        }
        let one = one.finish();
        for slice in [1, 2, 5, 23, 100] {
            let numbered: Vec<(usize, &String)> = items.iter().enumerate().collect();
            let parallel =
                Csv::on_every_core(&["text", "n"], &numbered, slice, 16, |out, (i, item)| {
                    out.row([item.as_str(), &i.to_string()]);
                });
            assert_eq!(parallel, one, "slices of {slice}");
        }
        assert_eq!(
            Csv::on_every_core(&["a"], &[] as &[u8], 4, 8, |_, _| {}),
            "a\r\n"
        );
    }
}
