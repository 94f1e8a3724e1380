//! The numeric Cholesky factorisation of closed-form matting's band, on all cores: a left-looking
//! supernodal factorisation over faer's symbolic structure, with the supernodes of independent
//! subtrees factorised at the same time.
//!
//! faer's own supernodal factorisation runs the supernodes one after the other and splits only
//! the dense block operations across threads, which on a band's many small supernodes gains
//! nothing on 2 cores; and for each supernode it visits every descendant, including those that
//! do not update it. Here each supernode is updated only by the descendants whose pattern reaches
//! it, and a supernode is factorised as soon as its children are, so the two halves of a nested
//! dissection (and their halves) run in parallel. The factor is laid out as faer lays it out; the
//! triangular solves run on the same pieces of work, supernode by supernode with faer's dense
//! kernels. Most of a band's supernodes are a few columns wide: their panels are factorised by
//! plain loops, where faer's dense routines cost more to set up than the arithmetic (measured:
//! the solve 3-9% faster on the sample photos' bands).
//!
//! [`solve`] factorises in single precision and refines the solution against the double-precision
//! matrix: the factorisation is bound by memory traffic here (in double precision the second core
//! gained 1.2x, in single 1.8x), and refinement gives back the double-precision answer within
//! 1e-4 in one to four steps (one or two on the sample photos' bands, four on a 4K one).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{self as dense_llt, LltError};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::sparse::linalg::cholesky::supernodal::SymbolicSupernodalCholesky;
use faer::{Accum, MatMut, MatRef, Par};

/// The lower triangle of a symmetric matrix in compressed columns, in the factor's order: column
/// `j` holds entries at rows `>= j` (in any order within the column).
#[derive(Debug, Clone, Copy)]
pub struct LowerColumns<'a, T> {
    pub starts: &'a [usize],
    pub rows: &'a [usize],
    pub values: &'a [T],
}

/// The precisions the factorisation runs in.
pub trait Real:
    faer::traits::RealField
    + Copy
    + Default
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::Mul<Output = Self>
    + Send
    + Sync
{
    const ONE: Self;
    const ZERO: Self;
    fn square_root(self) -> Self;
    fn reciprocal(self) -> Self;
}

impl Real for f64 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
    fn square_root(self) -> Self {
        self.sqrt()
    }
    fn reciprocal(self) -> Self {
        1.0 / self
    }
}

impl Real for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
    fn square_root(self) -> Self {
        self.sqrt()
    }
    fn reciprocal(self) -> Self {
        1.0 / self
    }
}

impl<T: Real> LowerColumns<'_, T> {
    fn column(&self, j: usize) -> impl Iterator<Item = (usize, T)> + '_ {
        let range = self.starts[j]..self.starts[j + 1];
        self.rows[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }
}

/// Refinement stops when no value of the solution would move by more than this in the steps to
/// come: a 40th of an 8-bit level of alpha.
const REFINED: f64 = 1e-4;

/// Refinement steps before the single-precision factor is given up for a double-precision one.
const MOST_REFINEMENTS: usize = 8;

/// The solution of `A x = rhs` for the symmetric positive definite `matrix`, in the order of
/// `symbolic`. The factor is computed in single precision (half the memory traffic of double,
/// which bounds the factorisation here, and twice the values per vector instruction) and the
/// solution refined against the double-precision matrix, `x += L^-T L^-1 (rhs - A x)`, until
/// the steps to come would move no value by more than [`REFINED`]: on the sample photos' bands
/// one or two steps, the answer within 1e-4 of the double-precision factor's. When the
/// single-precision factor fails or refinement does not settle (a matrix too ill-conditioned
/// for it), the factor is computed again in double precision.
pub fn solve(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    matrix: LowerColumns<'_, f64>,
    rhs: &[f64],
) -> Result<Vec<f64>, FactorError> {
    solve_saying_how(symbolic, matrix, rhs).map(|(solution, _)| solution)
}

/// The precision a system was factorised in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    /// Single, the solution refined in double.
    Single,
    Double,
}

/// [`solve`], and the precision of the factor that solved it.
fn solve_saying_how(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    matrix: LowerColumns<'_, f64>,
    rhs: &[f64],
) -> Result<(Vec<f64>, Precision), FactorError> {
    let tree = Tree::new(symbolic, SMALLEST_PARALLEL_WORK, SMALLEST_PARALLEL_SHARE);
    let single: Vec<f32> = matrix.values.iter().map(|&v| v as f32).collect();
    let single_matrix = LowerColumns {
        starts: matrix.starts,
        rows: matrix.rows,
        values: &single,
    };
    match factorize(symbolic, &tree, single_matrix) {
        Ok(factor) => {
            drop(single);
            if let Some(solution) = refine(symbolic, &tree, &factor, matrix, rhs) {
                return Ok((solution, Precision::Single));
            }
        }
        // Double precision would need twice the memory.
        Err(error @ FactorError::OutOfMemory { .. }) => return Err(error),
        Err(FactorError::NotPositiveDefinite { .. }) => {}
    }
    let factor = factorize(symbolic, &tree, matrix)?;
    let mut solution = rhs.to_vec();
    solve_in_place(symbolic, &tree, &factor, &mut solution);
    Ok((solution, Precision::Double))
}

/// Iterative refinement with a single-precision factor; `None` when it does not settle.
fn refine(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    tree: &Tree,
    factor: &[f32],
    matrix: LowerColumns<'_, f64>,
    rhs: &[f64],
) -> Option<Vec<f64>> {
    let mut step: Vec<f32> = rhs.iter().map(|&v| v as f32).collect();
    solve_in_place(symbolic, tree, factor, &mut step);
    let mut solution: Vec<f64> = step.iter().map(|&v| f64::from(v)).collect();
    let mut residual = vec![0.0; rhs.len()];
    // Refinement from a zero start would have taken the first solution as its first step: the
    // step the next one is compared with.
    let mut previous = largest_magnitude(&step)?;
    for _ in 0..MOST_REFINEMENTS {
        residual.copy_from_slice(rhs);
        subtract_product(matrix, &solution, &mut residual);
        step.iter_mut()
            .zip(&residual)
            .for_each(|(s, &r)| *s = r as f32);
        solve_in_place(symbolic, tree, factor, &mut step);
        let largest = largest_magnitude(&step)?;
        for (x, &s) in solution.iter_mut().zip(&step) {
            *x += f64::from(s);
        }
        // Refinement converges linearly: with steps shrinking by `ratio`, what the steps to
        // come would still add is about `largest * ratio / (1 - ratio)`.
        let ratio = largest / previous;
        if largest <= REFINED || (ratio < 0.5 && largest * ratio / (1.0 - ratio) <= REFINED) {
            return Some(solution);
        }
        previous = largest;
    }
    None
}

/// The largest magnitude in `values`; `None` if one is not a number (refinement has then
/// failed: the double-precision factor takes over).
fn largest_magnitude(values: &[f32]) -> Option<f64> {
    values.iter().try_fold(0.0f64, |largest, &v| {
        (!v.is_nan()).then(|| largest.max(f64::from(v).abs()))
    })
}

/// `out -= A x` for the symmetric `A` given by its lower triangle.
fn subtract_product(matrix: LowerColumns<'_, f64>, x: &[f64], out: &mut [f64]) {
    for j in 0..x.len() {
        let mut column_sum = 0.0;
        for (i, value) in matrix.column(j) {
            out[i] -= value * x[j];
            if i != j {
                column_sum += value * x[i];
            }
        }
        out[j] -= column_sum;
    }
}

/// `x = A^-1 x` with the factor `L` of `A`, on the pieces of work of `tree` (those of the
/// factorisation), independent pieces on all cores at once: `L y = x` up the tree, then
/// `L^T x = y` down it. Each supernode is solved with the dense kernels faer's own supernodal
/// solve uses; what changes is who adds a supernode's update to the rows below it. Within a
/// piece, the supernode does (as faer does); into a supernode of another piece, which two
/// pieces running side by side could both update, the updated supernode gathers its updaters'
/// contributions itself when its turn comes, in a fixed order (the results do not depend on
/// which piece ends first).
fn solve_in_place<T: Real>(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    tree: &Tree,
    factor: &[T],
    x: &mut [T],
) {
    assert_eq!(
        factor.len(),
        symbolic.len_val(),
        "a factor of this structure"
    );
    assert_eq!(x.len(), symbolic.nrows(), "one value per column");
    let solve = Solve {
        symbolic,
        tree,
        factor,
        x: SharedFactor {
            values: x.as_mut_ptr(),
            len: x.len(),
        },
    };
    let solve = &solve;
    let pending = &tree.pending_children();
    rayon::scope(|scope| {
        for &root in &tree.units {
            scope.spawn(move |scope| solve.forward_piece(scope, pending, root));
        }
    });
    rayon::scope(|scope| {
        for s in (0..tree.parent.len()).filter(|&s| tree.parent[s].is_none()) {
            scope.spawn(move |scope| solve.backward_piece(scope, s));
        }
    });
}

/// Where supernode `s`'s block lies among the factor's values.
fn block_range(symbolic: &SymbolicSupernodalCholesky<usize>, s: usize) -> std::ops::Range<usize> {
    let pointers = symbolic.col_ptr_for_val();
    pointers[s]..pointers[s + 1]
}

/// The supernode of each column.
fn supernode_of(symbolic: &SymbolicSupernodalCholesky<usize>) -> Vec<usize> {
    let mut supernode_of = vec![0; symbolic.nrows()];
    for s in 0..symbolic.n_supernodes() {
        let (start, end) = (symbolic.supernode_begin()[s], symbolic.supernode_end()[s]);
        supernode_of[start..end].fill(s);
    }
    supernode_of
}

/// A solve in progress: the solution's values are written through `x` by the piece that owns
/// each supernode, and read by others only once that piece has ended (up the tree, a parent's
/// piece starts after its children's, as in the factorisation; down it, a piece starts after
/// its parent's), with the same guarantees as [`SharedFactor`].
struct Solve<'a, T> {
    symbolic: &'a SymbolicSupernodalCholesky<usize>,
    tree: &'a Tree,
    factor: &'a [T],
    x: SharedFactor<T>,
}

impl<T: Real> Solve<'_, T> {
    /// Supernode `s`'s columns of the factor: its dense block, the diagonal block on top.
    fn block(&self, s: usize) -> MatRef<'_, T> {
        let symbolic = self.symbolic;
        let columns = symbolic.supernode_end()[s] - symbolic.supernode_begin()[s];
        let rows = columns + symbolic.supernode(s).pattern().len();
        MatRef::from_column_major_slice(&self.factor[block_range(symbolic, s)], rows, columns)
    }

    fn columns(&self, s: usize) -> std::ops::Range<usize> {
        self.symbolic.supernode_begin()[s]..self.symbolic.supernode_end()[s]
    }

    /// `L y = x` over the piece rooted at `root`, then its parent's once all its children's
    /// have ended.
    fn forward_piece<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        pending: &'s [AtomicUsize],
        root: usize,
    ) {
        let mut scratch = Vec::new();
        if self.tree.alone(root) {
            self.forward(root, &mut scratch);
        } else {
            for s in self.tree.members(root) {
                self.forward(s, &mut scratch);
            }
        }
        if let Some(parent) = self.tree.parent[root]
            && pending[parent].fetch_sub(1, Ordering::AcqRel) == 1
        {
            scope.spawn(move |scope| self.forward_piece(scope, pending, parent));
        }
    }

    /// Supernode `s` of `L y = x`: less the contributions of its updaters in other pieces, its
    /// diagonal block solved, its update taken from the rows below it that its own piece owns.
    fn forward(&self, s: usize, scratch: &mut Vec<T>) {
        let symbolic = self.symbolic;
        let columns = self.columns(s);
        let start = columns.start;
        // SAFETY: this is the task of s's piece, which owns s's columns.
        let own = unsafe { self.x.block_mut(columns.clone()) };
        for &d in &self.tree.updaters[s] {
            if self.tree.owner[d] == self.tree.owner[s] {
                continue;
            }
            let d_columns = self.columns(d);
            let d_pattern = symbolic.supernode(d).pattern();
            let first = d_pattern.partition_point(|&r| r < start);
            let inside = d_pattern[first..].partition_point(|&r| r < columns.end);
            let reaching = self.block(d).subrows(d_columns.len() + first, inside);
            // SAFETY: d is a descendant of s in another piece, which has ended.
            let solved = unsafe { self.x.block(d_columns.clone()) };
            scratch.clear();
            scratch.resize(inside, T::ZERO);
            matmul(
                MatMut::from_column_major_slice_mut(scratch, inside, 1),
                Accum::Replace,
                reaching,
                MatRef::from_column_major_slice(solved, d_columns.len(), 1),
                T::ONE,
                Par::Seq,
            );
            for (&row, &value) in d_pattern[first..first + inside].iter().zip(scratch.iter()) {
                own[row - start] -= value;
            }
        }
        let block = self.block(s);
        let (diagonal, below) = block.split_at_row(columns.len());
        solve_lower_triangular_in_place(
            diagonal,
            MatMut::from_column_major_slice_mut(own, columns.len(), 1),
            Par::Seq,
        );
        let pattern = symbolic.supernode(s).pattern();
        // The rows below that this piece owns form a prefix of the pattern: they belong to
        // the supernodes between s and its piece's root, which come before the root's
        // ancestors.
        let tree = self.tree;
        let owned =
            pattern.partition_point(|&row| tree.owner[tree.supernode_of[row]] == tree.owner[s]);
        if owned == 0 {
            return;
        }
        scratch.clear();
        scratch.resize(owned, T::ZERO);
        matmul(
            MatMut::from_column_major_slice_mut(scratch, owned, 1),
            Accum::Replace,
            below.subrows(0, owned),
            MatRef::from_column_major_slice(own, columns.len(), 1),
            T::ONE,
            Par::Seq,
        );
        for (&row, &value) in pattern[..owned].iter().zip(scratch.iter()) {
            // SAFETY: the row is in a supernode of this piece, whose task this is.
            unsafe { self.x.subtract(row, value) };
        }
    }

    /// `L^T x = y` over the piece rooted at `root`, parents first, then the pieces of its
    /// children.
    fn backward_piece<'s>(&'s self, scope: &rayon::Scope<'s>, root: usize) {
        let mut scratch = Vec::new();
        if self.tree.alone(root) {
            self.backward(root, &mut scratch);
            for &child in &self.tree.children[root] {
                scope.spawn(move |scope| self.backward_piece(scope, child));
            }
        } else {
            for s in self.tree.members(root).into_iter().rev() {
                self.backward(s, &mut scratch);
            }
        }
    }

    /// Supernode `s` of `L^T x = y`, as faer solves it: less its block below times the
    /// solution there (its ancestors', solved), its diagonal block transposed solved.
    fn backward(&self, s: usize, scratch: &mut Vec<T>) {
        let columns = self.columns(s);
        let pattern = self.symbolic.supernode(s).pattern();
        scratch.clear();
        // SAFETY: the rows below s are its ancestors', whose tasks have ended.
        scratch.extend(pattern.iter().map(|&row| unsafe { self.x.get(row) }));
        // SAFETY: this is the task of s's piece, which owns s's columns.
        let own = unsafe { self.x.block_mut(columns.clone()) };
        let block = self.block(s);
        let (diagonal, below) = block.split_at_row(columns.len());
        let mut own = MatMut::from_column_major_slice_mut(own, columns.len(), 1);
        matmul(
            own.rb_mut(),
            Accum::Add,
            below.transpose(),
            MatRef::from_column_major_slice(scratch, pattern.len(), 1),
            T::ONE.neg(),
            Par::Seq,
        );
        solve_upper_triangular_in_place(diagonal.transpose(), own, Par::Seq);
    }
}

/// Why a factorisation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactorError {
    /// A pivot that was not positive: the matrix is not positive definite.
    #[error("pivot {column} is not positive")]
    NotPositiveDefinite { column: usize },
    #[error("no memory for its {entries} factor entries")]
    OutOfMemory { entries: usize },
}

/// Subtrees with fewer estimated multiply-adds than this, or than [`SMALLEST_PARALLEL_SHARE`]
/// of the whole factorisation's, are factorised as one piece of work, supernode after
/// supernode: splitting them further costs more in scheduling than it gains.
const SMALLEST_PARALLEL_WORK: f64 = 2e6;

/// The share of the whole factorisation's work below which a subtree is one piece: on two
/// cores, pieces of an eighth of the whole still keep both busy, and fewer, bigger pieces cost
/// less in scheduling and in factor values travelling between the cores' caches (measured
/// against the fixed floor alone, medians of 21 interleaved: the solve up to 12% faster on the
/// sample photos' bands at their size (chelsea 36-38 -> 31-33 ms, coffee and astronaut within
/// noise), 5-8% at 1080p, the same at 4K).
const SMALLEST_PARALLEL_SHARE: f64 = 0.125;

/// Supernodes whose updates add up to at least this many multiply-adds apply them on two
/// threads.
const SPLIT_UPDATES_WORK: f64 = 4e7;

/// Supernodes with at least this many columns split their own dense operations across the
/// threads too: near the root of the tree, where fewer subtrees are left to run side by side.
const SPLIT_DENSE_COLUMNS: usize = 256;

/// [`factorize`] with the tree of the pieces of work in use, or with subtrees below
/// `smallest_parallel_work` multiply-adds or below `smallest_parallel_share` of the whole's as
/// single pieces of work.
#[cfg(test)]
fn factorize_in_pieces<T: Real>(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    matrix: LowerColumns<'_, T>,
    smallest_parallel_work: f64,
    smallest_parallel_share: f64,
) -> Result<Vec<T>, FactorError> {
    let tree = Tree::new(symbolic, smallest_parallel_work, smallest_parallel_share);
    factorize(symbolic, &tree, matrix)
}

/// The values of the factor `L` of `matrix` (`L L^T = A`) in the layout of `symbolic`
/// (`symbolic.len_val()` of them, as faer's supernodal factorisation writes them), computed in
/// the pieces of work of `tree`.
fn factorize<T: Real>(
    symbolic: &SymbolicSupernodalCholesky<usize>,
    tree: &Tree,
    matrix: LowerColumns<'_, T>,
) -> Result<Vec<T>, FactorError> {
    // The factor is the one allocation that follows the fill (gigabytes on a wide 4K band):
    // refused memory is an error, not an abort.
    let entries = symbolic.len_val();
    let mut values = Vec::new();
    values
        .try_reserve_exact(entries)
        .map_err(|_| FactorError::OutOfMemory { entries })?;
    values.resize(entries, T::default());
    let shared = SharedFactor {
        values: values.as_mut_ptr(),
        len: values.len(),
    };
    let work = Work {
        symbolic,
        matrix,
        tree,
        factor: &shared,
        pending: tree.pending_children(),
        failed: AtomicBool::new(false),
        failure: Mutex::new(None),
    };
    let work = &work;
    rayon::scope(|scope| {
        for &root in &tree.units {
            scope.spawn(move |scope| work.run_unit(scope, root));
        }
    });
    let failure = *work.failure.lock().unwrap_or_else(|e| e.into_inner());
    match failure {
        Some(failure) => Err(failure),
        None => Ok(values),
    }
}

/// The supernodal elimination tree, its update lists, and how it is cut into pieces of work.
struct Tree {
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    /// For each supernode, the supernodes whose pattern has a row in it (its updaters), in
    /// order.
    updaters: Vec<Vec<usize>>,
    /// Roots of the subtrees factorised as one piece of work each (see
    /// [`SMALLEST_PARALLEL_WORK`] and [`SMALLEST_PARALLEL_SHARE`]); the supernodes above them are
    /// one piece each.
    units: Vec<usize>,
    /// Whether a supernode is the root of a unit or above one (so scheduled alone).
    scheduled: Vec<bool>,
    /// Per supernode, the piece of work it belongs to: the root of its unit when the unit is a
    /// subtree worked on as one piece, else itself.
    owner: Vec<usize>,
    /// The supernode of each column.
    supernode_of: Vec<usize>,
}

impl Tree {
    /// The supernodes of the subtree rooted at `root`, children first (the supernodes of a
    /// subtree are numbered before its root).
    fn members(&self, root: usize) -> Vec<usize> {
        let mut stack = vec![root];
        let mut members = Vec::new();
        while let Some(s) = stack.pop() {
            members.push(s);
            stack.extend(&self.children[s]);
        }
        members.sort_unstable();
        members
    }

    /// Whether `s` is worked on alone (its children are pieces of their own), rather than as the
    /// root of a subtree worked on as one piece.
    fn alone(&self, s: usize) -> bool {
        self.children[s].iter().all(|&c| self.scheduled[c])
    }

    /// A counter per supernode of its children not yet done, for the pieces that go up the
    /// tree.
    fn pending_children(&self) -> Vec<AtomicUsize> {
        self.children
            .iter()
            .map(|children| AtomicUsize::new(children.len()))
            .collect()
    }

    fn new(
        symbolic: &SymbolicSupernodalCholesky<usize>,
        smallest_parallel_work: f64,
        smallest_parallel_share: f64,
    ) -> Self {
        let count = symbolic.n_supernodes();
        let supernode_of = supernode_of(symbolic);
        let mut parent = vec![None; count];
        let mut children = vec![Vec::new(); count];
        let mut updaters = vec![Vec::new(); count];
        let mut work = vec![0.0; count];
        for s in 0..count {
            let pattern = symbolic.supernode(s).pattern();
            if let Some(&first) = pattern.first() {
                parent[s] = Some(supernode_of[first]);
                children[supernode_of[first]].push(s);
            }
            let mut last = None;
            for &row in pattern {
                let target = supernode_of[row];
                if last != Some(target) {
                    updaters[target].push(s);
                    last = Some(target);
                }
            }
            let columns = (symbolic.supernode_end()[s] - symbolic.supernode_begin()[s]) as f64;
            let rows = columns + pattern.len() as f64;
            work[s] += columns * columns * rows;
        }
        // Children come before their parents in a supernodal order: subtree sums in one pass.
        for s in 0..count {
            if let Some(p) = parent[s] {
                work[p] += work[s];
            }
        }
        let whole: f64 = (0..count)
            .filter(|&s| parent[s].is_none())
            .map(|s| work[s])
            .sum();
        let smallest = smallest_parallel_work.max(whole * smallest_parallel_share);
        let big = |s: usize| work[s] >= smallest;
        let mut scheduled = vec![false; count];
        let mut units = Vec::new();
        for s in 0..count {
            let parent_big = parent[s].is_none_or(big);
            if big(s) {
                scheduled[s] = true;
                if children[s].is_empty() {
                    units.push(s);
                }
            } else if parent_big {
                scheduled[s] = true;
                units.push(s);
            }
        }
        let mut owner: Vec<usize> = (0..count).collect();
        // Parents come after their children: from the top down, a supernode that is not
        // scheduled belongs to its parent's piece.
        for s in (0..count).rev() {
            if !scheduled[s]
                && let Some(p) = parent[s]
            {
                owner[s] = owner[p];
            }
        }
        Self {
            parent,
            children,
            updaters,
            units,
            scheduled,
            owner,
            supernode_of,
        }
    }
}

/// The factor's values, written by the tasks of its supernodes at once.
///
/// Each supernode's block is written only by that supernode's task, and read only by the tasks
/// of its ancestors, which start after it has finished (the counter of its parent's pending
/// children is decremented with release ordering when it ends, and read with acquire ordering
/// before the parent starts).
struct SharedFactor<T> {
    values: *mut T,
    len: usize,
}

// SAFETY: see the type's documentation: blocks are disjoint, each written by one task, read
// only after that task ended.
unsafe impl<T: Send> Sync for SharedFactor<T> {}
unsafe impl<T: Send> Send for SharedFactor<T> {}

impl<T> SharedFactor<T> {
    /// # Safety
    /// Only the task of the supernode that owns `range` may call this, once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn block_mut(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked), and no other task touches the block meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.values.add(range.start), range.len()) }
    }

    /// # Safety
    /// Only by the task that owns `index`, or once that task has ended and none writes it.
    unsafe fn get(&self, index: usize) -> T
    where
        T: Copy,
    {
        assert!(index < self.len);
        // SAFETY: in bounds (checked); see the caller's contract.
        unsafe { *self.values.add(index) }
    }

    /// # Safety
    /// Only by the task that owns `index`, while no other reference to it is alive.
    unsafe fn subtract(&self, index: usize, value: T)
    where
        T: Copy + std::ops::SubAssign,
    {
        assert!(index < self.len);
        // SAFETY: in bounds (checked); see the caller's contract.
        unsafe { *self.values.add(index) -= value }
    }

    /// # Safety
    /// Only for the block of a supernode whose task has ended.
    unsafe fn block(&self, range: std::ops::Range<usize>) -> &[T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked), and no task writes the block any more.
        unsafe { std::slice::from_raw_parts(self.values.add(range.start), range.len()) }
    }
}

/// The buffers of a piece of work's updates, kept from supernode to supernode.
struct UpdateScratch<T> {
    /// One descendant's product `L_d L_d^T` on the rows it updates.
    product: Vec<T>,
    /// Where each of those rows lands in the updated supernode's block.
    targets: Vec<usize>,
}

impl<T> Default for UpdateScratch<T> {
    fn default() -> Self {
        Self {
            product: Vec::new(),
            targets: Vec::new(),
        }
    }
}

struct Work<'a, T> {
    symbolic: &'a SymbolicSupernodalCholesky<usize>,
    matrix: LowerColumns<'a, T>,
    tree: &'a Tree,
    factor: &'a SharedFactor<T>,
    /// Per supernode, how many of its children have not ended.
    pending: Vec<AtomicUsize>,
    failed: AtomicBool,
    failure: Mutex<Option<FactorError>>,
}

impl<T: Real> Work<'_, T> {
    /// Factorises the unit rooted at `root` (its whole subtree when it is small, or `root`
    /// alone), then schedules the parent once all its children have ended.
    fn run_unit<'s>(&'s self, scope: &rayon::Scope<'s>, root: usize) {
        if !self.failed.load(Ordering::Relaxed) {
            let mut scratch = UpdateScratch::default();
            let outcome = if self.tree.alone(root) {
                self.factorize_supernode(root, &mut scratch)
            } else {
                self.factorize_subtree(root, &mut scratch)
            };
            if let Err(failure) = outcome {
                self.failed.store(true, Ordering::Relaxed);
                let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(failure);
            }
        }
        if let Some(parent) = self.tree.parent[root]
            && self.pending[parent].fetch_sub(1, Ordering::AcqRel) == 1
        {
            scope.spawn(move |scope| self.run_unit(scope, parent));
        }
    }

    /// Every supernode of a small subtree, children first (the supernodes of a subtree are
    /// numbered before its root).
    fn factorize_subtree(
        &self,
        root: usize,
        scratch: &mut UpdateScratch<T>,
    ) -> Result<(), FactorError> {
        self.tree
            .members(root)
            .into_iter()
            .try_for_each(|s| self.factorize_supernode(s, scratch))
    }

    /// Where supernode `d`'s pattern reaches supernode `s`: the index of its first row at or
    /// after `s`'s columns, and how many of its rows fall among them.
    fn reach(&self, s: usize, d: usize) -> (usize, usize) {
        let symbolic = self.symbolic;
        let (start, end) = (symbolic.supernode_begin()[s], symbolic.supernode_end()[s]);
        let d_pattern = symbolic.supernode(d).pattern();
        let first = d_pattern.partition_point(|&r| r < start);
        (first, d_pattern[first..].partition_point(|&r| r < end))
    }

    /// Multiply-adds of supernode `d`'s update of supernode `s`.
    fn update_cost(&self, s: usize, d: usize) -> f64 {
        let symbolic = self.symbolic;
        let below = symbolic.supernode(d).pattern().len();
        let d_columns = symbolic.supernode_end()[d] - symbolic.supernode_begin()[d];
        let (first, inside) = self.reach(s, d);
        ((below - first) * inside * d_columns) as f64
    }

    /// Subtracts from `block` (supernode `s`'s values, column-major) the updates `L_d L_d^T` of
    /// the `updaters`' factors on its rows and columns.
    fn apply_updates(
        &self,
        s: usize,
        updaters: &[usize],
        block: &mut [T],
        scratch: &mut UpdateScratch<T>,
    ) {
        let symbolic = self.symbolic;
        let (start, end) = (symbolic.supernode_begin()[s], symbolic.supernode_end()[s]);
        let pattern = symbolic.supernode(s).pattern();
        let columns = end - start;
        let rows = columns + pattern.len();
        let UpdateScratch { product, targets } = scratch;
        for &d in updaters {
            let (d_start, d_end) = (symbolic.supernode_begin()[d], symbolic.supernode_end()[d]);
            let d_pattern = symbolic.supernode(d).pattern();
            let d_columns = d_end - d_start;
            // SAFETY: d is a descendant of s, so its task has ended.
            let d_block = unsafe { self.factor.block(block_range(self.symbolic, d)) };
            let ld =
                MatRef::from_column_major_slice(d_block, d_columns + d_pattern.len(), d_columns);
            let (first, inside) = self.reach(s, d);
            let below = ld.subrows(d_columns + first, d_pattern.len() - first);
            let reaching = below.subrows(0, inside);
            // The rows of d's pattern from `first` on are rows of s (its columns, then its
            // pattern): where each lands, by one merge walk.
            targets.clear();
            let mut position = 0;
            for &row in &d_pattern[first..] {
                if row < end {
                    targets.push(row - start);
                } else {
                    while pattern[position] != row {
                        position += 1;
                    }
                    targets.push(columns + position);
                }
            }
            let height = below.nrows();
            product.clear();
            product.resize(height * inside, T::default());
            matmul(
                MatMut::from_column_major_slice_mut(product, height, inside),
                Accum::Replace,
                below,
                reaching.transpose(),
                T::ONE,
                Par::Seq,
            );
            for (c, update) in product.chunks_exact(height).enumerate() {
                let column = &mut block[targets[c] * rows..][..rows];
                for (&target, &value) in targets[c..].iter().zip(&update[c..]) {
                    column[target] -= value;
                }
            }
        }
    }

    /// Left-looking: the supernode's columns of the matrix, less the updates of the descendants
    /// that reach it, then its dense factorisation.
    fn factorize_supernode(
        &self,
        s: usize,
        scratch: &mut UpdateScratch<T>,
    ) -> Result<(), FactorError> {
        let symbolic = self.symbolic;
        let (start, end) = (symbolic.supernode_begin()[s], symbolic.supernode_end()[s]);
        let pattern = symbolic.supernode(s).pattern();
        let columns = end - start;
        let rows = columns + pattern.len();
        let local_row = |row: usize| -> usize {
            if row < end {
                row - start
            } else {
                columns
                    + pattern
                        .binary_search(&row)
                        .expect("the symbolic pattern holds every row of the matrix")
            }
        };
        // SAFETY: this is supernode s's task.
        let block = unsafe { self.factor.block_mut(block_range(self.symbolic, s)) };
        for j in start..end {
            let column = &mut block[(j - start) * rows..][..rows];
            for (i, value) in self.matrix.column(j) {
                column[local_row(i)] += value;
            }
        }
        // The updates: on big supernodes (near the root, where few subtrees are left to run
        // beside them) in two halves at once, the second into a block of its own added after.
        let updaters = &self.tree.updaters[s];
        let total: f64 = updaters.iter().map(|&d| self.update_cost(s, d)).sum();
        if total >= SPLIT_UPDATES_WORK {
            let mut sum = 0.0;
            let half = updaters.iter().take_while(|&&d| {
                sum += self.update_cost(s, d);
                sum < total / 2.0
            });
            let (first, second) = updaters.split_at(half.count());
            let mut other = vec![T::default(); block.len()];
            rayon::join(
                || self.apply_updates(s, first, block, scratch),
                || self.apply_updates(s, second, &mut other, &mut UpdateScratch::default()),
            );
            for (value, update) in block.iter_mut().zip(&other) {
                *value += *update;
            }
        } else {
            self.apply_updates(s, updaters, block, scratch);
        }
        if columns <= SMALL_DENSE_COLUMNS {
            return factorize_panel(block, rows, columns).map_err(|index| {
                FactorError::NotPositiveDefinite {
                    column: start + index,
                }
            });
        }
        let par = if columns >= SPLIT_DENSE_COLUMNS {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let ls = MatMut::from_column_major_slice_mut(block, rows, columns);
        let (mut top, bottom) = ls.split_at_row_mut(columns);
        let mut scratch = MemBuffer::new(dense_llt::cholesky_in_place_scratch::<T>(
            columns,
            par,
            Default::default(),
        ));
        match dense_llt::cholesky_in_place(
            top.rb_mut(),
            Default::default(),
            par,
            MemStack::new(&mut scratch),
            Default::default(),
        ) {
            Ok(_) => {}
            Err(LltError::NonPositivePivot { index }) => {
                return Err(FactorError::NotPositiveDefinite {
                    column: start + index,
                });
            }
        }
        solve_lower_triangular_in_place(top.rb(), bottom.transpose_mut(), par);
        Ok(())
    }
}

/// Supernodes of at most this many columns are factorised by plain loops: most of a band's
/// supernodes, on which the dense routines' set-up outweighs their work.
const SMALL_DENSE_COLUMNS: usize = 32;

/// The Cholesky factor of a supernode's panel in place (`rows` x `columns`, column-major, the
/// diagonal block on top): column by column, each less its earlier columns' contributions,
/// then divided by its pivot's square root, which factorises the diagonal block and solves the
/// rows below it against it at once. The failing column when a pivot is not positive.
fn factorize_panel<T: Real>(panel: &mut [T], rows: usize, columns: usize) -> Result<(), usize> {
    for j in 0..columns {
        let (done, rest) = panel.split_at_mut(j * rows);
        let column = &mut rest[j..rows];
        for k in 0..j {
            let earlier = &done[k * rows + j..][..rows - j];
            let scale = earlier[0];
            for (value, &l) in column.iter_mut().zip(earlier) {
                *value -= l * scale;
            }
        }
        let pivot = column[0];
        // A NaN pivot fails too.
        if pivot.partial_cmp(&T::ZERO) != Some(std::cmp::Ordering::Greater) {
            return Err(j);
        }
        let root = pivot.square_root();
        let inverse = root.reciprocal();
        column[0] = root;
        for value in &mut column[1..] {
            *value = *value * inverse;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Side;
    use faer::sparse::linalg::SupernodalThreshold;
    use faer::sparse::linalg::cholesky::{
        CholeskySymbolicParams, SymbolicCholesky, SymbolicCholeskyRaw, SymmetricOrdering,
        factorize_symbolic_cholesky,
    };
    use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};

    /// The factor, in the pieces of work in use.
    fn factorize<T: Real>(
        symbolic: &SymbolicSupernodalCholesky<usize>,
        matrix: LowerColumns<'_, T>,
    ) -> Result<Vec<T>, FactorError> {
        factorize_in_pieces(
            symbolic,
            matrix,
            SMALLEST_PARALLEL_WORK,
            SMALLEST_PARALLEL_SHARE,
        )
    }

    /// `x = A^-1 x`, in the pieces of work in use.
    fn solve_in_place<T: Real>(
        symbolic: &SymbolicSupernodalCholesky<usize>,
        factor: &[T],
        x: &mut [T],
    ) {
        let tree = Tree::new(symbolic, SMALLEST_PARALLEL_WORK, SMALLEST_PARALLEL_SHARE);
        super::solve_in_place(symbolic, &tree, factor, x);
    }

    /// A matrix in compressed columns: its lower triangle with values, its upper triangle's
    /// structure.
    struct GridMatrix {
        lower_starts: Vec<usize>,
        lower_rows: Vec<usize>,
        lower_values: Vec<f64>,
        upper_starts: Vec<usize>,
        upper_rows: Vec<usize>,
    }

    impl GridMatrix {
        /// [`grid_matrix`] in a nested-dissection order, as a band is ordered.
        fn dissected(width: usize, height: usize) -> Self {
            let positions: Vec<u32> = (0..(width * height) as u32).collect();
            grid_matrix(width, height, &nested_dissection_order(&positions, width))
        }

        fn n(&self) -> usize {
            self.lower_starts.len() - 1
        }

        fn lower(&self) -> LowerColumns<'_, f64> {
            LowerColumns {
                starts: &self.lower_starts,
                rows: &self.lower_rows,
                values: &self.lower_values,
            }
        }

        /// faer's supernodal analysis, as closed_form.rs asks for it.
        fn symbolic(&self) -> SymbolicCholesky<usize> {
            let n = self.n();
            let structure = SymbolicSparseColMat::new_checked(
                n,
                n,
                self.upper_starts.clone(),
                None,
                self.upper_rows.clone(),
            );
            factorize_symbolic_cholesky(
                structure.as_ref(),
                Side::Upper,
                SymmetricOrdering::Identity,
                CholeskySymbolicParams {
                    supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
                    ..Default::default()
                },
            )
            .unwrap()
        }

        /// The largest `|A x - b|` over the rows.
        fn residual(&self, x: &[f64], b: &[f64]) -> f64 {
            let mut out = b.to_vec();
            subtract_product(self.lower(), x, &mut out);
            out.iter().fold(0.0f64, |m, v| m.max(v.abs()))
        }
    }

    fn nested_dissection_order(positions: &[u32], width: usize) -> Vec<usize> {
        super::super::nested_dissection::order(positions, width, 2)
    }

    fn supernodal(symbolic: &SymbolicCholesky<usize>) -> &SymbolicSupernodalCholesky<usize> {
        match symbolic.raw() {
            SymbolicCholeskyRaw::Supernodal(supernodal) => supernodal,
            SymbolicCholeskyRaw::Simplicial(_) => panic!("supernodal is forced"),
        }
    }

    /// The factor of `grid`'s matrix rounded to single precision.
    fn single_precision_factor(
        grid: &GridMatrix,
        symbolic: &SymbolicSupernodalCholesky<usize>,
    ) -> Vec<f32> {
        let single: Vec<f32> = grid.lower_values.iter().map(|&v| v as f32).collect();
        factorize(
            symbolic,
            LowerColumns {
                starts: &grid.lower_starts,
                rows: &grid.lower_rows,
                values: &single,
            },
        )
        .unwrap()
    }

    /// `b` solved with a single-precision `factor`, in single precision.
    fn solved_in_single_precision(
        symbolic: &SymbolicSupernodalCholesky<usize>,
        factor: &[f32],
        b: &[f64],
    ) -> Vec<f64> {
        let mut x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        solve_in_place(symbolic, factor, &mut x);
        x.iter().map(|&v| f64::from(v)).collect()
    }

    /// `grid`'s system solved by [`solve_saying_how`] (which must have refined a single-precision
    /// factor) and by the double-precision factor alone.
    fn refined_and_exact(
        grid: &GridMatrix,
        symbolic: &SymbolicSupernodalCholesky<usize>,
        b: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let (refined, precision) = solve_saying_how(symbolic, grid.lower(), b).unwrap();
        assert_eq!(precision, Precision::Single);
        let exact = solved(symbolic, &factorize(symbolic, grid.lower()).unwrap(), b);
        (refined, exact)
    }

    fn largest_difference(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
    }

    /// `b` solved with `factor`, in double precision.
    fn solved(symbolic: &SymbolicSupernodalCholesky<usize>, factor: &[f64], b: &[f64]) -> Vec<f64> {
        let mut x = b.to_vec();
        solve_in_place(symbolic, factor, &mut x);
        x
    }

    /// A symmetric positive definite matrix over a `width` x `height` grid coupling each point
    /// to those within two steps (as the matting Laplacian does), in the order `order`, with
    /// pseudo-random weights.
    fn grid_matrix(width: usize, height: usize, order: &[usize]) -> GridMatrix {
        let n = width * height;
        let mut position = vec![0; n];
        for (k, &p) in order.iter().enumerate() {
            position[p] = k;
        }
        let weight = |a: usize, b: usize| -> f64 {
            let (a, b) = (a.min(b), a.max(b));
            let h = (a * 2654435761 + b * 40503) % 1000;
            -0.1 - h as f64 / 1000.0
        };
        let (mut lower_starts, mut lower_rows, mut lower_values) =
            (vec![0], Vec::new(), Vec::new());
        let (mut upper_starts, mut upper_rows) = (vec![0], Vec::new());
        for (k, &p) in order.iter().enumerate() {
            let (x, y) = ((p % width) as isize, (p / width) as isize);
            let mut lower = Vec::new();
            let mut upper = Vec::new();
            let mut diagonal = 0.5;
            for dy in -2..=2 {
                for dx in -2..=2 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                        continue;
                    }
                    let q = ny as usize * width + nx as usize;
                    if q == p {
                        continue;
                    }
                    let w = weight(p, q);
                    diagonal -= w;
                    if position[q] > k {
                        lower.push((position[q], w));
                    } else {
                        upper.push(position[q]);
                    }
                }
            }
            lower.push((k, diagonal));
            upper.push(k);
            lower.sort_by_key(|&(r, _)| r);
            upper.sort_unstable();
            for (r, v) in lower {
                lower_rows.push(r);
                lower_values.push(v);
            }
            lower_starts.push(lower_rows.len());
            upper_rows.extend(upper);
            upper_starts.push(upper_rows.len());
        }
        GridMatrix {
            lower_starts,
            lower_rows,
            lower_values,
            upper_starts,
            upper_rows,
        }
    }

    /// Grids from one point to 60 000, in a nested-dissection order, as the band is ordered,
    /// and (where it fills little enough) the raster order; with their sizes.
    fn test_grids() -> Vec<(usize, usize, GridMatrix)> {
        let mut grids = Vec::new();
        for (width, height) in [(1, 1), (3, 2), (17, 9), (60, 45), (300, 200)] {
            let n = width * height;
            grids.push((width, height, GridMatrix::dissected(width, height)));
            if n < 5000 {
                let raster = grid_matrix(width, height, &(0..n).collect::<Vec<_>>());
                grids.push((width, height, raster));
            }
        }
        grids
    }

    #[test]
    fn the_factor_is_faers_own_and_solves_the_system() {
        for (width, height, grid) in test_grids() {
            let n = width * height;
            let symbolic = grid.symbolic();
            let supernodal = supernodal(&symbolic);
            // Each supernode alone, the whole tree as one piece, and as in use.
            let ours = factorize(supernodal, grid.lower()).unwrap();
            for pieces in [0.0, f64::INFINITY] {
                assert_eq!(
                    factorize_in_pieces(supernodal, grid.lower(), pieces, 0.0).unwrap(),
                    ours
                );
            }
            // faer's factorisation of the same matrix.
            let structure = SymbolicSparseColMat::new_checked(
                n,
                n,
                grid.lower_starts.clone(),
                None,
                grid.lower_rows.clone(),
            );
            let matrix = SparseColMatRef::new(structure.as_ref(), &grid.lower_values);
            let mut theirs = vec![0.0; symbolic.len_val()];
            let mut scratch = MemBuffer::new(
                symbolic.factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default()),
            );
            symbolic
                .factorize_numeric_llt(
                    &mut theirs,
                    matrix,
                    Side::Lower,
                    Default::default(),
                    Par::Seq,
                    MemStack::new(&mut scratch),
                    Default::default(),
                )
                .unwrap();
            let largest = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (position, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                // Above the diagonal of a supernode's diagonal block is not part of the
                // factor (no solve reads it): faer's dense routine leaves values there.
                if above_diagonal(supernodal, position) {
                    continue;
                }
                assert!(
                    (a - b).abs() <= 1e-12 * largest,
                    "{width}x{height}: {a} against {b}"
                );
            }
            // And the factor solves A x = b.
            let b: Vec<f64> = (0..n).map(|i| (i % 7) as f64 - 3.0).collect();
            let x = solved(supernodal, &ours, &b);
            assert!(grid.residual(&x, &b) < 1e-9, "{width}x{height}");
        }
    }

    #[test]
    fn the_solve_in_pieces_is_faers_supernodal_solve() {
        use faer::Conj;
        use faer::sparse::linalg::cholesky::supernodal::SupernodalLltRef;
        for (width, height, grid) in test_grids() {
            let n = width * height;
            let symbolic = grid.symbolic();
            let supernodal = supernodal(&symbolic);
            let factor = factorize(supernodal, grid.lower()).unwrap();
            let b: Vec<f64> = (0..n).map(|i| (i * 7919 % 13) as f64 - 6.0).collect();
            let mut theirs = b.clone();
            let mut scratch = MemBuffer::new(supernodal.solve_in_place_scratch::<f64>(1, Par::Seq));
            SupernodalLltRef::new(supernodal, &factor).solve_in_place_with_conj(
                Conj::No,
                MatMut::from_column_major_slice_mut(&mut theirs, n, 1),
                Par::Seq,
                MemStack::new(&mut scratch),
            );
            let largest = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            // Each supernode a piece (every update across pieces gathered), the whole tree
            // one piece (none), and the pieces in use.
            for (work, share) in [
                (0.0, 0.0),
                (f64::INFINITY, 0.0),
                (SMALLEST_PARALLEL_WORK, SMALLEST_PARALLEL_SHARE),
            ] {
                let tree = Tree::new(supernodal, work, share);
                let mut ours = b.clone();
                super::solve_in_place(supernodal, &tree, &factor, &mut ours);
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!(
                        (a - b).abs() <= 1e-12 * largest,
                        "{width}x{height}, pieces of {work}: {a} against {b}"
                    );
                }
            }
        }
    }

    /// Whether factor value `position` lies above the diagonal of its supernode's diagonal
    /// block.
    fn above_diagonal(symbolic: &SymbolicSupernodalCholesky<usize>, position: usize) -> bool {
        let pointers = symbolic.col_ptr_for_val();
        let s = pointers.partition_point(|&p| p <= position) - 1;
        let columns = symbolic.supernode_end()[s] - symbolic.supernode_begin()[s];
        let rows = columns + symbolic.supernode(s).pattern().len();
        let offset = position - pointers[s];
        offset % rows < offset / rows
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_names_its_pivot() {
        let (width, height) = (20, 20);
        let mut grid = grid_matrix(width, height, &(0..width * height).collect::<Vec<_>>());
        // Pixel 150's diagonal made negative.
        grid.lower_values[grid.lower_starts[150]] = -1.0;
        let symbolic = grid.symbolic();
        let failure = factorize(supernodal(&symbolic), grid.lower()).unwrap_err();
        assert!(
            matches!(failure, FactorError::NotPositiveDefinite { column } if column <= 150),
            "{failure}"
        );
    }

    #[test]
    fn a_small_panel_is_factorised_as_the_dense_routines_do_and_a_nan_pivot_is_refused() {
        // 3 columns over 5 rows: a diagonally dominant top, two rows below.
        let (rows, columns) = (5, 3);
        let entry = |i: usize, j: usize| -> f64 {
            if i == j {
                4.0 + i as f64
            } else {
                1.0 / (1.0 + i as f64 + j as f64)
            }
        };
        let panel: Vec<f64> = (0..columns)
            .flat_map(|j| (0..rows).map(move |i| if i >= j { entry(i, j) } else { 0.0 }))
            .collect();
        let mut ours = panel.clone();
        factorize_panel(&mut ours, rows, columns).unwrap();
        let mut theirs = panel.clone();
        let block = MatMut::from_column_major_slice_mut(&mut theirs, rows, columns);
        let (mut top, bottom) = block.split_at_row_mut(columns);
        let mut scratch = MemBuffer::new(dense_llt::cholesky_in_place_scratch::<f64>(
            columns,
            Par::Seq,
            Default::default(),
        ));
        dense_llt::cholesky_in_place(
            top.rb_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut scratch),
            Default::default(),
        )
        .unwrap();
        solve_lower_triangular_in_place(top.rb(), bottom.transpose_mut(), Par::Seq);
        for j in 0..columns {
            for i in j..rows {
                let (a, b) = (ours[j * rows + i], theirs[j * rows + i]);
                assert!((a - b).abs() <= 1e-14, "({i}, {j}): {a} against {b}");
            }
        }
        let mut with_nan = panel;
        with_nan[rows + 1] = f64::NAN;
        assert_eq!(factorize_panel(&mut with_nan, rows, columns), Err(1));
    }

    #[test]
    fn a_single_precision_factor_refined_solves_as_exactly_as_a_double_one() {
        let grid = GridMatrix::dissected(120, 80);
        let symbolic = grid.symbolic();
        let supernodal = supernodal(&symbolic);
        let b: Vec<f64> = (0..grid.n())
            .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let (refined, exact) = refined_and_exact(&grid, supernodal, &b);
        let worst = largest_difference(&refined, &exact);
        assert!(
            worst <= REFINED,
            "{worst:e} from the double-precision solution"
        );
        // Unrefined, single precision alone is further off.
        let single_factor = single_precision_factor(&grid, supernodal);
        let unrefined = solved_in_single_precision(supernodal, &single_factor, &b);
        assert!(grid.residual(&refined, &b) < grid.residual(&unrefined, &b) / 10.0);
    }

    /// A graph Laplacian over a `width` x `height` grid with weights single precision holds
    /// exactly (rows summing to zero, singular) plus `shift` on the diagonal: the smaller the
    /// shift, the worse its condition, as the matting Laplacian's small epsilon makes it.
    fn shifted_graph_laplacian(width: usize, height: usize, shift: f64) -> GridMatrix {
        let mut grid = GridMatrix::dissected(width, height);
        let n = grid.n();
        let mut degree = vec![0.0; n];
        for j in 0..n {
            for e in grid.lower_starts[j]..grid.lower_starts[j + 1] {
                let i = grid.lower_rows[e];
                if i != j {
                    grid.lower_values[e] = -0.25 * (1 + (i + j) % 3) as f64;
                    degree[j] -= grid.lower_values[e];
                    degree[i] -= grid.lower_values[e];
                }
            }
        }
        for (j, degree) in degree.iter().enumerate() {
            let diagonal = (grid.lower_starts[j]..grid.lower_starts[j + 1])
                .find(|&e| grid.lower_rows[e] == j)
                .unwrap();
            grid.lower_values[diagonal] = degree + shift;
        }
        grid
    }

    #[test]
    fn refinement_goes_on_until_the_solution_settles_however_far_off_the_first_step_is() {
        // Conditioned badly enough that the single-precision solution is off by far more than
        // REFINED (and the first step of refinement moves it by as much), well enough that
        // refinement converges: the answer must still be within REFINED of double precision's.
        let grid = shifted_graph_laplacian(60, 40, 1e-5);
        let symbolic = grid.symbolic();
        let supernodal = supernodal(&symbolic);
        // A right-hand side whose solution is of the size of an alpha: x in 0..1, b = A x.
        let wanted: Vec<f64> = (0..grid.n()).map(|k| (k % 17) as f64 / 16.0).collect();
        let mut b = vec![0.0; grid.n()];
        subtract_product(grid.lower(), &wanted, &mut b);
        b.iter_mut().for_each(|v| *v = -*v);
        let (refined, exact) = refined_and_exact(&grid, supernodal, &b);
        let worst = |x: &[f64]| largest_difference(x, &exact);
        assert!(
            worst(&refined) <= REFINED,
            "{:e} from the double-precision solution",
            worst(&refined)
        );
        // What one step of refinement alone gives is not: the test needs more.
        let single_factor = single_precision_factor(&grid, supernodal);
        let mut one_step = solved_in_single_precision(supernodal, &single_factor, &b);
        let mut residual = b.clone();
        subtract_product(grid.lower(), &one_step, &mut residual);
        let step = solved_in_single_precision(supernodal, &single_factor, &residual);
        one_step.iter_mut().zip(&step).for_each(|(x, s)| *x += s);
        assert!(
            worst(&one_step) > REFINED,
            "one step already within {:e}: the matrix is too well conditioned to test this",
            worst(&one_step)
        );
    }

    #[test]
    fn a_step_that_is_not_a_number_ends_refinement() {
        assert_eq!(largest_magnitude(&[0.5, -3.0, 2.0]), Some(3.0));
        assert_eq!(largest_magnitude(&[]), Some(0.0));
        assert_eq!(largest_magnitude(&[1.0, f32::NAN, 2.0]), None);
    }

    #[test]
    fn a_matrix_too_ill_conditioned_for_single_precision_is_factorised_in_double() {
        // With 1e-9 on the diagonal: in single precision the 1e-9 is rounded away and what is
        // left is singular.
        let grid = shifted_graph_laplacian(60, 40, 1e-9);
        let n = grid.n();
        let symbolic = grid.symbolic();
        let supernodal = supernodal(&symbolic);
        let b: Vec<f64> = (0..n).map(|k| (k % 13) as f64 / 13.0 - 0.5).collect();
        let (solution, precision) = solve_saying_how(supernodal, grid.lower(), &b).unwrap();
        assert_eq!(precision, Precision::Double);
        let exact = solved(
            supernodal,
            &factorize(supernodal, grid.lower()).unwrap(),
            &b,
        );
        assert_eq!(solution, exact);
    }
}
