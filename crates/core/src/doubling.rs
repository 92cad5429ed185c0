//! Inserting into vectors that usually hold one element.
//!
//! A link-day is made of small vectors (its days, hours, visitor hashes, five top-N
//! tables), and in a long tail most of them only ever hold one element. `Vec`'s first
//! allocation is room for four, so a pending link-day spent ~1 KB on slots it never
//! used: the list of days alone allocated 4 × 208 bytes. These grow 1, 2, 4, 8, ...:
//! one element costs one element's bytes, and pushes stay amortized O(1).

/// `vec.insert(at, value)`, reserving exactly double (at least one) when full.
pub(crate) fn insert<T>(vec: &mut Vec<T>, at: usize, value: T) {
    if vec.len() == vec.capacity() {
        vec.reserve_exact(vec.len().max(1));
    }
    vec.insert(at, value);
}

/// `vec.push(value)`, growing like [`insert`].
pub(crate) fn push<T>(vec: &mut Vec<T>, value: T) {
    let at = vec.len();
    insert(vec, at, value);
}

#[cfg(test)]
mod tests {
    #[test]
    fn vectors_grow_from_one_by_doubling() {
        let mut v = Vec::new();
        let mut capacities = Vec::new();
        for i in 0..9 {
            super::push(&mut v, i);
            capacities.push(v.capacity());
        }
        assert_eq!(capacities, [1, 2, 4, 4, 8, 8, 8, 8, 16]);
        super::insert(&mut v, 0, -1);
        assert_eq!(v[..3], [-1, 0, 1]);
    }
}
