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
}
