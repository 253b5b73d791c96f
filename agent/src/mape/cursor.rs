//! [`Cursor`]: lookups by name in a map keyed by names, for names that mostly come in
//! ascending order.
//!
//! Why: a tick looks up every value every rule names (100 services × 10 analytics: 1,000
//! lookups) and the breaches and last scales of every service. A search from a map's
//! root compares the name with several keys; a rule's names, and the planner's services,
//! mostly come in the map's order, so each name is found a step or two after the one
//! before.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;
use std::ops::Bound;

/// Entries a lookup steps over before it searches instead.
const MAX_STEPS: usize = 4;

/// Finds entries of `map` by name: each name is looked for from where the previous one
/// was. A name that does not come after the previous one, or that lies more than a few
/// entries ahead, is searched for; any order finds the same entries.
#[derive(Debug)]
pub(super) struct Cursor<'a, K, V> {
    map: &'a BTreeMap<K, V>,
    /// The entries from the first whose key is above the last name walked to.
    rest: Peekable<btree_map::Range<'a, K, V>>,
    /// The last name walked to: no entry before `rest` has a larger key.
    last: Option<&'a str>,
}

impl<'a, K: Borrow<str> + Ord, V> Cursor<'a, K, V> {
    pub(super) fn new(map: &'a BTreeMap<K, V>) -> Cursor<'a, K, V> {
        Cursor {
            map,
            rest: map.range::<str, _>(..).peekable(),
            last: None,
        }
    }

    /// The entry named `name`.
    pub(super) fn get(&mut self, name: &'a str) -> Option<(&'a K, &'a V)> {
        if self.last.is_some_and(|last| name <= last) {
            return self.map.get_key_value(name);
        }
        self.last = Some(name);
        for _ in 0..MAX_STEPS {
            let (key, _) = self.rest.peek()?;
            match (*key).borrow().cmp(name) {
                Ordering::Less => {
                    self.rest.next();
                }
                Ordering::Equal => return self.rest.next(),
                Ordering::Greater => return None,
            }
        }
        self.rest = self
            .map
            .range::<str, _>((Bound::Included(name), Bound::Unbounded))
            .peekable();
        self.rest.next_if(|(key, _)| (*key).borrow() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_same_entries_as_a_search_in_any_order() {
        let map: BTreeMap<String, usize> = (0..20)
            .filter(|i| i % 3 != 0)
            .map(|i| (format!("k{i:02}"), i))
            .collect();
        let names: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        let orders: [Vec<usize>; 5] = [
            (0..25).collect(),
            (0..25).rev().collect(),
            vec![1, 1, 2, 19, 3, 4, 24, 0, 5],
            vec![0, 10, 11, 20, 21, 22, 23],
            (0..25).step_by(7).chain((0..25).step_by(2)).collect(),
        ];
        for order in orders {
            let mut cursor = Cursor::new(&map);
            for i in order {
                let name = names[i].as_str();
                assert_eq!(
                    cursor.get(name),
                    map.get_key_value(name),
                    "{name} in {map:?}"
                );
            }
        }
    }
}
