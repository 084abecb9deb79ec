/// One (sequence, query head) of an attention backward call: the forward's
/// unit (q, k, v, its output O and lse, masks, ALiBi, dropout stream) and
/// where the gradients go.
///
///     dOut: [queries, valueDim] read     dQ: [queries, headDim] written
///     dK:   [keys, headDim]     written  dV: [keys, valueDim]   written
///
/// Units whose dK and dV are the same rows (the query heads of one GQA group)
/// form a `group`; the engine sums their contributions in unit order.
package struct BackwardUnit<E> {
    package var forward: AttentionUnit<E>
    package var dOut: Strided2D<E>
    package var dQ: MutableStrided2D<E>
    package var dK: MutableStrided2D<E>
    package var dV: MutableStrided2D<E>

    package init(forward: AttentionUnit<E>, dOut: Strided2D<E>, dQ: MutableStrided2D<E>, dK: MutableStrided2D<E>,
                 dV: MutableStrided2D<E>) {
        self.forward = forward; self.dOut = dOut; self.dQ = dQ; self.dK = dK; self.dV = dV
    }
}

/// A backward call: its units, and the groups of units sharing dK/dV rows
/// (indices into `units`, each group in ascending order; every unit in exactly one).
package struct BackwardProblem<E> {
    package var units: [BackwardUnit<E>]
    package var groups: [[Int]]

    package init(units: [BackwardUnit<E>], groups: [[Int]]) {
        self.units = units; self.groups = groups
    }
}
