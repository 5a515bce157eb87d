//! Per-user `data`: JSON Merge Patch (RFC 7396) of a user's entry over the request's `data`.
//!
//! `{"id": "1", "data": {"name": "Ann", "order": {"total": 5}}}` over `{"order": {"id": 7}}`
//! gives `{"order": {"id": 7, "total": 5}, "name": "Ann"}`; a `null` in the patch removes
//! the key. Objects merge key by key, anything else replaces.

use crate::domain::Object;
use serde_json::Value;

/// `base` with `patch` applied (RFC 7396).
pub fn merge_patch(base: &Object, patch: &Object) -> Object {
    let mut merged = base.clone();
    apply(&mut merged, patch);
    merged
}

fn apply(target: &mut Object, patch: &Object) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.shift_remove(key);
            }
            Value::Object(inner_patch) => match target.get_mut(key) {
                Some(Value::Object(inner_target)) => apply(inner_target, inner_patch),
                _ => {
                    let mut fresh = Object::new();
                    apply(&mut fresh, inner_patch);
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// An object with the serialized size of everything nested in it measured once, so that
/// the size of any patch merged over it is found in time linear in the patch alone (not in
/// the object: a request's 10,000 per-user patches over 256 KiB of `data` must not cost
/// 10,000 copies of it).
pub struct Measured<'a> {
    /// Σ over entries of `"key":value`, without braces and commas.
    entries_len: usize,
    entries: std::collections::HashMap<&'a str, MeasuredEntry<'a>>,
}

struct MeasuredEntry<'a> {
    /// Length of `"key":value`.
    len: usize,
    /// The value, measured, when it is an object (what a patch can merge into).
    nested: Option<Measured<'a>>,
}

impl<'a> Measured<'a> {
    /// Measure `object` (time linear in its serialized size).
    pub fn new(object: &'a Object) -> Measured<'a> {
        let mut entries = std::collections::HashMap::with_capacity(object.len());
        let mut entries_len = 0;
        for (key, value) in object {
            let (value_len, nested) = match value {
                Value::Object(inner) => {
                    let nested = Measured::new(inner);
                    (nested.len(), Some(nested))
                }
                other => (value_len(other), None),
            };
            let len = key_len(key) + 1 + value_len;
            entries_len += len;
            entries.insert(key.as_str(), MeasuredEntry { len, nested });
        }
        Measured {
            entries_len,
            entries,
        }
    }

    /// The compact serialized length of the object.
    pub fn len(&self) -> usize {
        object_len(self.entries_len, self.entries.len())
    }

    /// Whether the object has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The compact serialized length of `merge_patch(object, patch)`, without building it.
    pub fn merged_len(&self, patch: &Object) -> usize {
        let mut count = self.entries.len();
        let mut entries_len = self.entries_len;
        for (key, value) in patch {
            let existing = self.entries.get(key.as_str());
            let new_len = match value {
                Value::Null => None,
                Value::Object(inner) => Some(match existing.and_then(|e| e.nested.as_ref()) {
                    Some(nested) => nested.merged_len(inner),
                    None => fresh_len(inner),
                }),
                other => Some(value_len(other)),
            };
            if let Some(old) = existing {
                entries_len -= old.len;
                count -= 1;
            }
            if let Some(value_len) = new_len {
                entries_len += key_len(key) + 1 + value_len;
                count += 1;
            }
        }
        object_len(entries_len, count)
    }
}

/// The length of a patch applied to an empty object (its `null`s dropped, at every level).
fn fresh_len(patch: &Object) -> usize {
    let mut count = 0;
    let mut entries_len = 0;
    for (key, value) in patch {
        let value_len = match value {
            Value::Null => continue,
            Value::Object(inner) => fresh_len(inner),
            other => value_len(other),
        };
        entries_len += key_len(key) + 1 + value_len;
        count += 1;
    }
    object_len(entries_len, count)
}

fn object_len(entries_len: usize, count: usize) -> usize {
    2 + entries_len + count.saturating_sub(1)
}

fn key_len(key: &str) -> usize {
    serialized_len_of(key)
}

fn value_len(value: &Value) -> usize {
    serialized_len_of(value)
}

/// Length of the compact JSON serialization of `value`, without building it.
pub fn serialized_len_of<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing JSON values to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nested_objects_merge_and_null_removes() {
        let base = obj(json!({"order": {"id": 7, "items": 2}, "shop": "a", "drop": 1}));
        let patch = obj(json!({"order": {"total": 5, "items": null}, "name": "Ann", "drop": null}));
        assert_eq!(
            Value::Object(merge_patch(&base, &patch)),
            json!({"order": {"id": 7, "total": 5}, "shop": "a", "name": "Ann"})
        );
    }

    #[test]
    fn non_objects_replace() {
        let base = obj(json!({"a": {"b": 1}, "c": [1, 2]}));
        let patch = obj(json!({"a": 3, "c": [3]}));
        assert_eq!(
            Value::Object(merge_patch(&base, &patch)),
            json!({"a": 3, "c": [3]})
        );
    }

    #[test]
    fn a_merged_length_is_measured_without_merging() {
        let base = obj(json!({
            "order": {"id": 7, "items": [1, {"x": null}], "deep": {"a": {"b": "c"}}},
            "name": "Ann \"quoted\" \u{e9}\n",
            "drop": 1,
            "n": null,
            "tab\tkey": true
        }));
        let patches = [
            json!({}),
            json!({"drop": null}),
            json!({"drop": null, "name": null, "order": null, "n": null, "tab\tkey": null}),
            json!({"missing": null}),
            json!({"order": {"deep": {"a": {"b": null, "z": [1, 2]}}, "id": null}}),
            json!({"order": 3, "new": {"k": {"v": null, "w": 1}}}),
            json!({"name": {"first": "A", "last": null}}),
            json!({"n": {"x": {}}, "é\u{1F600}": "ü"}),
        ];
        let measured = Measured::new(&base);
        assert_eq!(measured.len(), serialized_len_of(&base));
        for patch in patches {
            let patch = obj(patch);
            assert_eq!(
                measured.merged_len(&patch),
                serialized_len_of(&merge_patch(&base, &patch)),
                "{patch:?}"
            );
        }
        let empty = Object::new();
        assert_eq!(
            Measured::new(&empty).merged_len(&obj(json!({"a": null}))),
            2
        );
    }
}
