//! Column alignment as Docker's table output does it: Go's `text/tabwriter` with minimum
//! width 10, padding 3, spaces. Cells are separated by tabs; the last cell of a line is
//! never padded.

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Aligns tab-separated lines into columns.
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &rows {
        // Only cells followed by a tab are padded: the last cell of each row is free.
        let padded = row.len().saturating_sub(1);
        for (i, cell) in row.iter().take(padded).enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max((cell.chars().count() + PADDING).max(MIN_WIDTH));
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_images_layout() {
        let lines = vec![
            "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE".to_string(),
            "busybox\tlatest\t0123456789ab\t2 weeks ago\t4.26MB".to_string(),
            "127.0.0.1:5000/lab/busybox\tzstd\tba9876543210\t3 years ago\t1.2GB".to_string(),
        ];
        let want = "\
REPOSITORY                   TAG       IMAGE ID       CREATED       SIZE
busybox                      latest    0123456789ab   2 weeks ago   4.26MB
127.0.0.1:5000/lab/busybox   zstd      ba9876543210   3 years ago   1.2GB
";
        assert_eq!(align(&lines), want);
    }

    #[test]
    fn header_only_and_unicode() {
        assert_eq!(align(&["A\tB".to_string()]), "A         B\n");
        let lines = vec!["é…\tx".to_string(), "abcdefghij\ty".to_string()];
        assert_eq!(align(&lines), "é…           x\nabcdefghij   y\n");
        assert_eq!(align(&[]), "");
    }
}
