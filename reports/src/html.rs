//! `index.html`: one self-contained page (no fetches: styles, plots and the one small script are
//! inline) showing the verdict and key numbers, the plots, then the tables. The Markdown of
//! `summary.md` is rendered with pulldown-cmark, so the page and the summary never disagree.
//!
//! The script only checks, once the page has loaded, that every plot has a visible size; it
//! records the count on `<body data-plots=… data-plots-visible=…>` and logs a console error for
//! any plot that is not visible, which is what the browser test reads.

use pulldown_cmark::{Event, Options, Parser, html};

use crate::model::{Report, Verdict};

/// Escape text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown to HTML; raw HTML in the source (a scenario's description) is shown as text.
pub fn markdown_to_html(md: &str) -> String {
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        // summary.md's footnote is the one tag we write ourselves.
        Event::InlineHtml(h) if matches!(h.as_ref(), "<sub>" | "</sub>") => Event::InlineHtml(h),
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        e => e,
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

/// A plot for the page: its file stem, a caption, and the SVG document.
#[derive(Clone, Debug)]
pub struct PagePlot {
    /// File name of the SVG (`latency.svg`); the figure's id is its stem.
    pub file: String,
    /// The SVG document.
    pub svg: String,
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 2rem 4rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: .4rem 0 .8rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
.verdict { display: inline-block; padding: .15rem .7rem; border-radius: 1rem; color: #fff; font-weight: 600; margin-right: .5rem; }
.pass { background: #1a7f37; } .fail { background: #cf222e; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; font-size: .88rem; }
figure.plot { margin: 1rem 0 2rem; }
figure.plot svg { width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
figcaption { font-size: .85rem; color: #57606a; }
nav a { margin-right: 1rem; }
"#;

const CHECK: &str = r#"
window.addEventListener('load', function () {
  var plots = document.querySelectorAll('figure.plot svg');
  var visible = 0;
  plots.forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    if (r.width > 100 && r.height > 100 && svg.querySelectorAll('text').length > 0) { visible++; }
    else { console.error('plot not visible: ' + svg.parentNode.id); }
  });
  document.body.dataset.plots = String(plots.length);
  document.body.dataset.plotsVisible = String(visible);
});
"#;

/// The page for `report`, from its rendered `summary` Markdown and its plots.
pub fn index_html(report: &Report, summary: &str, plots: &[PagePlot]) -> String {
    let r = &report.run;
    let (class, verdict) = match report.verdict {
        Verdict::Pass => ("pass", "PASS"),
        Verdict::Fail => ("fail", "FAIL"),
    };
    // summary.md: a title line, the verdict and key numbers, then `## ` sections of tables.
    let body = summary.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    let (head, tables) = match body.find("\n## ") {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    };
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!(
        "<title>{verdict}: {} (seed {}) — meshsim</title>\n<style>{STYLE}</style>\n",
        escape(&r.scenario),
        r.seed
    ));
    page.push_str(&format!("<script>{CHECK}</script>\n</head>\n<body>\n"));
    page.push_str(&format!(
        "<h1><span class=\"verdict {class}\">{verdict}</span>{} <small>(seed {})</small></h1>\n",
        escape(&r.scenario),
        r.seed
    ));
    if !plots.is_empty() {
        page.push_str("<nav>");
        for p in plots {
            let id = stem(&p.file);
            page.push_str(&format!("<a href=\"#{id}\">{}</a>", escape(&caption(id))));
        }
        page.push_str("<a href=\"#tables\">Tables</a></nav>\n");
    }
    page.push_str(&markdown_to_html(head));
    if !plots.is_empty() {
        page.push_str("<h2 id=\"plots\">Plots</h2>\n");
    }
    for p in plots {
        let id = stem(&p.file);
        let svg = p.svg.find("<svg").map(|i| &p.svg[i..]).unwrap_or(&p.svg);
        page.push_str(&format!(
            "<figure class=\"plot\" id=\"{id}\">\n{svg}\n<figcaption>{} — {}</figcaption>\n</figure>\n",
            escape(&caption(id)),
            escape(&p.file)
        ));
    }
    page.push_str("<div id=\"tables\"></div>\n");
    page.push_str(&markdown_to_html(tables));
    page.push_str(&format!(
        "<p><small>Report schema {} · meshsim {} · {}</small></p>\n</body>\n</html>\n",
        report.schema_version,
        escape(&r.meshsim_version),
        escape(&r.repro)
    ));
    page
}

fn stem(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(s, _)| s)
}

fn caption(stem: &str) -> String {
    match stem {
        "latency" => "Latency over time".into(),
        "traffic" => "Rate and errors".into(),
        "amplification" => "Retry amplification".into(),
        "breakers" => "Breakers and ejections".into(),
        "spectrum" => "Latency distribution".into(),
        "trace" => "Slowest trace".into(),
        s => s.replace('-', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_in_markdown_is_text() {
        let h =
            markdown_to_html("a <script>alert(1)</script> b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n");
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("<table>"));
    }
}
