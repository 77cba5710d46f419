//! A small CSV reader (RFC 4180) for `x700 import`: comma-separated fields,
//! double quotes around a field that holds commas, quotes (doubled) or line
//! breaks, lines ending in LF or CRLF. Each record carries the line it
//! starts on, so that a rejected row can be named as an editor shows it.
//!
//! A plain reader rather than a crate: the import needs only this much,
//! and it must report a malformed quote with its line like any other error.

/// One record: the line it starts on (1-based) and its fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// Line number of the record's first character.
    pub line: u64,
    /// The fields, unquoted.
    pub fields: Vec<String>,
}

/// Why the text is not CSV.
#[derive(Debug, PartialEq, Eq)]
pub struct CsvError {
    /// Line of the problem.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Splits `text` into records. Blank lines (nothing but a line ending)
/// are skipped. A field longer than `field_bytes_max` is an error (so a
/// missing closing quote cannot swallow the rest of a large file into one
/// field unnoticed).
pub fn records(text: &str, field_bytes_max: usize) -> Result<Vec<Record>, CsvError> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line: u64 = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(CsvError {
                        line: start,
                        reason: "a quoted field is not closed before the end of the file".into(),
                    });
                }
                fields.push(std::mem::take(&mut field));
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    c => field.push(c),
                }
            } else {
                match c {
                    ',' => {
                        fields.push(std::mem::take(&mut field));
                        was_quoted = false;
                    }
                    '\r' if chars.peek() == Some(&'\n') => {}
                    '\n' => {
                        line += 1;
                        fields.push(std::mem::take(&mut field));
                        break;
                    }
                    '"' if field.is_empty() && !was_quoted => {
                        quoted = true;
                        was_quoted = true;
                    }
                    '"' => {
                        return Err(CsvError {
                            line,
                            reason: "a quote inside an unquoted field (quote the whole field \
                                     and double the quote)"
                                .into(),
                        })
                    }
                    c if was_quoted => {
                        return Err(CsvError {
                            line,
                            reason: format!("{c:?} after the closing quote of a field"),
                        })
                    }
                    c => field.push(c),
                }
            }
            if field.len() > field_bytes_max {
                return Err(CsvError {
                    line: start,
                    reason: format!("a field is longer than {field_bytes_max} bytes"),
                });
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !was_quoted;
        if !blank {
            records.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    //! Quoting, CRLF, blank lines and line numbers of the CSV reader.

    use super::*;

    fn fields(text: &str) -> Vec<(u64, Vec<String>)> {
        records(text, 64)
            .expect("valid CSV")
            .into_iter()
            .map(|r| (r.line, r.fields))
            .collect()
    }

    fn owned(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn plain_quoted_and_crlf_records_keep_their_starting_line() {
        let text = "x,a\r\n\"7001\",\"a,\"\"b\"\"\"\r\n\r\n\"multi\nline\",z\n3,";
        assert_eq!(
            fields(text),
            vec![
                (1, owned(&["x", "a"])),
                (2, owned(&["7001", "a,\"b\""])),
                (4, owned(&["multi\nline", "z"])),
                (6, owned(&["3", ""])),
            ]
        );
    }

    #[test]
    fn malformed_quotes_and_long_fields_are_errors_with_their_line() {
        assert_eq!(records("a\nb\"c\n", 64).unwrap_err().line, 2);
        assert_eq!(records("a\n\"open\nmore", 64).unwrap_err().line, 2);
        assert_eq!(records("a\n\"x\"y\n", 64).unwrap_err().line, 2);
        assert_eq!(records("ok\n12345\n", 4).unwrap_err().line, 2);
    }
}
