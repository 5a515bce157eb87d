//! The message model: what a `message` action sends, for every channel.
//!
//! A message is a text template with an optional markup (`html` or `markdown_v2`, as
//! Telegram reads them), optional URL buttons, per-platform overrides of the text, and
//! per-channel extras (Telegram's link preview). It is checked when the event is created
//! and rendered per user ([`crate::template`]): every value put into a marked-up text is
//! escaped for that markup, so a user's data can neither break the markup nor add its own;
//! every value put into a button's URL is percent-encoded, and the URL must be http(s).
//!
//! A channel says which markups it renders and what its messages may hold
//! ([`MessageLimits`]). [`Rendered::fit`] turns a rendered message into what one channel
//! can send: markup it does not render becomes plain text (never raw tags), and a message
//! over the channel's limits fails before any call (`too_long`, `rejected`), never cut.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Buttons a message may carry at most, on any channel (each channel may allow fewer).
pub const MAX_BUTTONS: usize = 10;

/// The longest button label a template may hold, in characters.
pub const MAX_BUTTON_TEXT_CHARS: usize = 200;

/// The longest button URL a message may carry, in bytes (Telegram's and most browsers'
/// practical bound).
pub const MAX_URL_BYTES: usize = 2048;

/// A markup a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Markup {
    /// Telegram's HTML subset: `<b>`, `<i>`, `<a href="…">`, `<code>`…
    Html,
    /// Telegram's MarkdownV2: `*bold*`, `_italic_`, `[text](url)`…
    MarkdownV2,
}

impl Markup {
    /// Telegram's `parse_mode` for it.
    pub fn parse_mode(self) -> &'static str {
        match self {
            Markup::Html => "HTML",
            Markup::MarkdownV2 => "MarkdownV2",
        }
    }
}

/// A text template and the markup it is written in (None: plain text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup: Option<Markup>,
}

/// A button that opens a URL. Both are templates; the URL's scheme and host are written
/// in it (`https://shop.example/orders/{{ last_request.order }}`), values put into it are
/// percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub text: String,
    pub url: String,
}

/// Telegram's link preview options, sent as its `link_preview_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPreview {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_disabled: bool,
    /// The URL to preview instead of the text's first one (a fixed URL, not a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefer_small_media: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefer_large_media: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub show_above_text: bool,
}

/// What only Telegram reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_preview: Option<LinkPreview>,
}

/// A `message` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup: Option<Markup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// The text for users of one platform instead of `template` (keyed by platform: `tg`,
    /// `vk`…), with its own markup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramExtras>,
}

impl Message {
    /// A plain text message.
    pub fn text(template: impl Into<String>) -> Message {
        Message {
            template: template.into(),
            markup: None,
            buttons: vec![],
            platforms: BTreeMap::new(),
            telegram: None,
        }
    }

    /// The text template and markup for a user on `platform`.
    pub fn text_for(&self, platform: &str) -> (&str, Option<Markup>) {
        match self.platforms.get(platform) {
            Some(text) => (&text.template, text.markup),
            None => (&self.template, self.markup),
        }
    }
}

/// Whether a button URL's template begins with a scheme and a host of its own.
pub fn starts_with_http_origin(template: &str) -> bool {
    let rest = template
        .strip_prefix("https://")
        .or_else(|| template.strip_prefix("http://"));
    rest.and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '[')
}

/// Whether `text` is an absolute http(s) URL with a host.
pub fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A button as rendered for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedButton {
    pub text: String,
    pub url: String,
}

/// A message as rendered for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// The markup `text` is in (its values escaped for it); None: plain.
    pub markup: Option<Markup>,
    pub buttons: Vec<RenderedButton>,
    pub telegram: Option<TelegramExtras>,
}

/// What one channel's messages may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// The markups it renders; any other is sent as plain text.
    pub renders: &'static [Markup],
    /// The longest text, in characters as the user sees them (markup left out).
    pub text_chars: usize,
    pub buttons: usize,
    pub button_text_chars: usize,
}

impl Rendered {
    /// This message as a channel with `limits` sends it: in a markup it renders, or as
    /// plain text; or the failure of a message it cannot carry (`too_long`, `rejected`).
    pub fn fit(mut self, limits: &MessageLimits) -> Result<Rendered, Refusal> {
        let shown = match self.markup {
            Some(markup) => to_plain(markup, &self.text),
            None => self.text.clone(),
        };
        if let Some(markup) = self.markup {
            if !limits.renders.contains(&markup) {
                self.text.clone_from(&shown);
                self.markup = None;
            }
        }
        let length = shown.chars().count();
        if length > limits.text_chars {
            return Err(refused(
                "too_long",
                format!(
                    "the message is {length} characters; this channel takes at most {}",
                    limits.text_chars
                ),
            ));
        }
        if self.buttons.len() > limits.buttons {
            return Err(refused(
                "rejected",
                format!(
                    "the message has {} buttons; this channel takes at most {}",
                    self.buttons.len(),
                    limits.buttons
                ),
            ));
        }
        if let Some(long) = self
            .buttons
            .iter()
            .find(|b| b.text.chars().count() > limits.button_text_chars)
        {
            return Err(refused(
                "rejected",
                format!(
                    "a button's text is {} characters; this channel takes at most {}",
                    long.text.chars().count(),
                    limits.button_text_chars
                ),
            ));
        }
        Ok(self)
    }
}

/// Why a channel cannot carry a message: a permanent failure of its user, found before
/// any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

fn refused(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// A value escaped for `markup`: it shows as itself and adds no markup.
pub fn escape(markup: Markup, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match markup {
            Markup::Html => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            },
            Markup::MarkdownV2 => {
                if MARKDOWN_V2_SPECIAL.contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// The characters MarkdownV2 reads as markup unless escaped with `\`.
const MARKDOWN_V2_SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";

/// A value put into a URL: everything but unreserved characters percent-encoded.
pub fn escape_url(value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// `text` in `markup` as the user would read it: tags and marks left out, escapes and
/// entities read, a link's URL kept after its text.
pub fn to_plain(markup: Markup, text: &str) -> String {
    match markup {
        Markup::Html => html_to_plain(text),
        Markup::MarkdownV2 => markdown_v2_to_plain(text),
    }
}

fn html_to_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut links: Vec<Option<String>> = Vec::new();
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest.find('>') {
                let tag = &rest[1..end];
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if name == "a" {
                    if tag.starts_with('/') {
                        if let Some(Some(href)) = links.pop() {
                            out.push_str(&format!(" ({href})"));
                        }
                    } else {
                        links.push(href_of(tag).map(|h| decode_entities(&h)));
                    }
                }
                rest = &rest[end + 1..];
                continue;
            }
        }
        if c == '&' {
            if let Some(end) = rest.find(';').filter(|&e| e <= 10) {
                if let Some(decoded) = entity(&rest[1..end]) {
                    out.push(decoded);
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn href_of(tag: &str) -> Option<String> {
    let at = tag.find("href=")?;
    let value = &tag[at + 5..];
    let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = &value[1..];
    Some(value[..value.find(quote)?].to_string())
}

fn decode_entities(text: &str) -> String {
    html_to_plain(&text.replace('<', "&lt;"))
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

fn markdown_v2_to_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // Inside a link's (url): its characters are kept, to be shown after its text.
    let mut url: Option<String> = None;
    let mut line_start = true;
    while let Some(c) = chars.next() {
        let escaped = c == '\\' && chars.peek().is_some();
        let c = if escaped {
            chars.next().unwrap_or(c)
        } else {
            c
        };
        if let Some(link) = url.as_mut() {
            if c == ')' && !escaped {
                out.push_str(&format!(" ({link})"));
                url = None;
            } else {
                link.push(c);
            }
            continue;
        }
        if !escaped {
            match c {
                '*' | '_' | '~' | '|' | '`' | '[' => continue,
                ']' if chars.peek() == Some(&'(') => {
                    chars.next();
                    url = Some(String::new());
                    continue;
                }
                ']' => continue,
                '>' if line_start => {
                    line_start = false;
                    continue;
                }
                _ => {}
            }
        }
        line_start = c == '\n';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_their_markup() {
        assert_eq!(
            escape(Markup::Html, r#"<b>A & "B"</b>"#),
            "&lt;b&gt;A &amp; &quot;B&quot;&lt;/b&gt;"
        );
        assert_eq!(
            escape(Markup::MarkdownV2, r"*_a_* [x](y) 1.5! \"),
            r"\*\_a\_\* \[x\]\(y\) 1\.5\! \\"
        );
        assert_eq!(escape_url("a b/c?d=é&"), "a%20b%2Fc%3Fd%3D%C3%A9%26");
    }

    #[test]
    fn marked_up_text_reads_as_plain_text_with_its_links() {
        assert_eq!(
            to_plain(
                Markup::Html,
                r#"<b>Order</b> &lt;7&gt; &amp; <a href="https://x.example/?a=1&amp;b=2">track</a>&#33;"#
            ),
            "Order <7> & track (https://x.example/?a=1&b=2)!"
        );
        assert_eq!(
            to_plain(
                Markup::MarkdownV2,
                "*Order* \\*7\\* _is_ ready\\! [track](https://x.example/a\\)b)\n>quote"
            ),
            "Order *7* is ready! track (https://x.example/a)b)\nquote"
        );
        // An escaped value reads back as itself.
        let value = r#"<i>&amp;</i> *_[x](y)_*"#;
        for markup in [Markup::Html, Markup::MarkdownV2] {
            assert_eq!(
                to_plain(markup, &escape(markup, value)),
                value,
                "{markup:?}"
            );
        }
    }

    fn limits(renders: &'static [Markup]) -> MessageLimits {
        MessageLimits {
            renders,
            text_chars: 10,
            buttons: 1,
            button_text_chars: 5,
        }
    }

    fn rendered(text: &str, markup: Option<Markup>, buttons: usize) -> Rendered {
        Rendered {
            text: text.into(),
            markup,
            buttons: (0..buttons)
                .map(|i| RenderedButton {
                    text: format!("b{i}"),
                    url: "https://x.example".into(),
                })
                .collect(),
            telegram: None,
        }
    }

    fn reason(result: Result<Rendered, Refusal>) -> &'static str {
        result.unwrap_err().reason
    }

    #[test]
    fn a_message_fits_a_channel_or_fails_before_any_call() {
        let html = rendered("<b>0123456789</b>", Some(Markup::Html), 0);
        // Rendered: the markup stays, its length is what the user sees.
        let kept = html.clone().fit(&limits(&[Markup::Html])).unwrap();
        assert_eq!(
            (kept.text.as_str(), kept.markup),
            ("<b>0123456789</b>", Some(Markup::Html))
        );
        // Not rendered: plain text, never raw tags.
        let plain = html.fit(&limits(&[])).unwrap();
        assert_eq!((plain.text.as_str(), plain.markup), ("0123456789", None));
        assert_eq!(
            reason(rendered("01234567890", None, 0).fit(&limits(&[]))),
            "too_long"
        );
        assert_eq!(
            reason(rendered("hi", None, 2).fit(&limits(&[]))),
            "rejected"
        );
        let mut long_label = rendered("hi", None, 1);
        long_label.buttons[0].text = "label!".into();
        assert_eq!(reason(long_label.fit(&limits(&[]))), "rejected");
    }
}
