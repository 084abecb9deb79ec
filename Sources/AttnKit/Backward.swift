import AttnKitCore

/// The backward passes: dQ, dK, dV from dO and the forward's q, k, v, out and
/// lse, for SDPA and for flash-attn's fixed-length and varlen layouts.
///
/// Each call is planned twice by its forward's planner: once on the forward's
/// tensors (which also checks every forward rule), once on the gradients laid
/// out as the forward's (dq as q, dk as k, dv as v, dout as out), so that unit
/// i of both plans is the same (sequence, head). Units writing the same dK/dV
/// rows (a GQA group) are summed by one task, in head order: the results do
/// not depend on the thread count.
enum AttentionBackward {
    /// Pairs the two plans and groups the units by their dK rows (the query heads
    /// of one KV head of one sequence).
    static func problem<E>(forward: [AttentionUnit<E>], gradients: [AttentionUnit<E>]) -> BackwardProblem<E> {
        var units: [BackwardUnit<E>] = []
        units.reserveCapacity(forward.count)
        var groupOf: [UnsafeRawPointer: Int] = [:]
        var groups: [[Int]] = []
        for (unit, gradient) in zip(forward, gradients) {
            let index = units.count
            units.append(BackwardUnit(
                forward: unit, dOut: Strided2D(base: UnsafePointer(gradient.out.base), rowStride: gradient.out.rowStride,
                                               colStride: gradient.out.colStride),
                dQ: MutableStrided2D(base: UnsafeMutablePointer(mutating: gradient.q.base),
                                     rowStride: gradient.q.rowStride, colStride: gradient.q.colStride),
                dK: MutableStrided2D(base: UnsafeMutablePointer(mutating: gradient.k.base),
                                     rowStride: gradient.k.rowStride, colStride: gradient.k.colStride),
                dV: MutableStrided2D(base: UnsafeMutablePointer(mutating: gradient.v.base),
                                     rowStride: gradient.v.rowStride, colStride: gradient.v.colStride)))
            // A unit without keys writes no dK rows, and its dK base may be the next
            // sequence's (varlen: an empty sequence starts where the next one does).
            let key = UnsafeRawPointer(gradient.k.base)
            if unit.keys == 0 {
                groups.append([index])
            } else if let group = groupOf[key] {
                groups[group].append(index)
            } else {
                groupOf[key] = groups.count
                groups.append([index])
            }
        }
        return BackwardProblem(units: units, groups: groups)
    }

    /// The gradients' shapes must be their inputs' shapes, and dq, dk, dv writable.
    static func checkGradients(_ pairs: [(String, [Int], [Int], Bool, String, [Int])],
                               writable: [(String, [Int], [Int])]) throws {
        for (name, shape, strides, hasData, like, expected) in pairs {
            guard shape == expected else {
                throw AttnError.shape(argument: name, rule: "must have \(like)'s shape \(expected), got \(shape)")
            }
            try validateLayout(name, shape: shape, strides: strides, hasData: hasData)
        }
        for (name, shape, strides) in writable { try validateWritable(name, shape: shape, strides: strides) }
    }

    /// Runs the problem on the engine (fp64 inputs, or `useReference`: the reference twin).
    static func run<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions, threads: Int,
                                    useReference: Bool) throws {
        if problem.units.isEmpty { return }
        if useReference || E.self == Double.self {
            try BackwardReference.run(problem, options: options, threads: useReference ? 1 : threads)
        } else {
            try KernelDispatch.runBackward(problem, options: options, threads: threads)
        }
    }

    /// Zero-fills rows `start...` (axis 0) of a gradient no unit writes: all of it
    /// when the call has no units, or a varlen batch's rows past its last sequence.
    static func zero<E: AttnStorage>(_ tensor: MutableStridedTensor<E>, rowsFrom start: Int = 0) {
        guard tensor.rank >= 1, start < tensor.shape[0], tensor.elementCount > 0 else { return }
        var rows = tensor.shape
        rows[0] -= start
        let base = tensor.data + start * tensor.strides[0]
        PerTensorQuantization.forEachOffset(rows, tensor.strides, tensor.strides) { offset, _ in
            base[offset] = E.fromFloat(0)
        }
    }
}

/// A read-only operand the planners check as an output (dout, and the forward's
/// out and lse): as given if its strides could be written through, otherwise a
/// contiguous copy (a broadcast dout, such as the gradient of a sum, is valid input).
struct ReadableOperand<E> {
    let view: StridedTensor<E>
    private let copy: Workspace<E>?

    init(_ tensor: StridedTensor<E>) throws {
        if (try? validateWritable("", shape: tensor.shape, strides: tensor.strides)) != nil {
            view = tensor; copy = nil
            return
        }
        let workspace = try Workspace<E>(count: Swift.max(1, tensor.elementCount))
        let source = tensor.data
        PerTensorQuantization.forEachOffset(tensor.shape, tensor.strides, contiguousStrides(tensor.shape)) { from, to in
            (workspace.pointer + to).initialize(to: source[from])
        }
        view = StridedTensor(contiguous: UnsafePointer(workspace.pointer), shape: tensor.shape)
        copy = workspace
    }

    func deallocate() { copy?.deallocate() }
}

extension StridedTensor {
    /// The same view as writable, for planners that take an output they will only read here.
    var assumingMutable: MutableStridedTensor<Element> {
        MutableStridedTensor(base: base.map { UnsafeMutablePointer(mutating: $0) }, shape: shape, strides: strides)
    }
}

extension FlashAttention {
    /// flash-attn's backward for `batched` (dropout is regenerated from `seed`):
    ///     dout, out: (B, Sq, Hq, Dv)   lse: (B, Hq, Sq) fp32, as the forward returned it
    ///     dq: q's shape   dk: k's shape   dv: v's shape   (written; dk, dv summed over each GQA group)
    public func batchedBackward<E: AttnStorage>(
        dOut: StridedTensor<E>, q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, out: StridedTensor<E>,
        lse: StridedTensor<Float>, alibiSlopes: Slopes? = nil, dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>,
        dV: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads, useReference: Bool = false
    ) throws {
        try checkBackward(dOut: dOut, q: q, k: k, v: v, out: out, dQ: dQ, dK: dK, dV: dV)
        let forward = try batchedUnits(q: q, k: k, v: v, alibiSlopes: alibiSlopes, out: out.assumingMutable,
                                       lse: lse.assumingMutable, probs: nil) ?? []
        let gradient = try ReadableOperand(dOut)   // checked above, and the forward's rules hold
        defer { gradient.deallocate() }
        let gradients: [AttentionUnit<E>]
        do {
            gradients = try batchedUnits(q: dQ.readOnly, k: dK.readOnly, v: dV.readOnly, alibiSlopes: alibiSlopes,
                                         out: gradient.view.assumingMutable, lse: nil, probs: nil) ?? []
        } catch let error as AttnError {
            throw error.renamingTensors(["q": "dq", "k": "dk", "v": "dv", "out": "dout"])
        }
        try finish(forward: forward, gradients: gradients, headDim: q.shape[3], valueDim: v.shape[3],
                   dQ: dQ, dK: dK, dV: dV, rowsCovered: forward.isEmpty ? (0, 0) : (q.shape[0], k.shape[0]),
                   threads: threads, useReference: useReference)
    }

    /// flash-attn's backward for `varlen`:
    ///     dout, out: (total_q, Hq, Dv)   lse: (Hq, total_q) fp32, as the forward returned it
    ///     dq: q's shape   dk: k's shape   dv: v's shape
    public func varlenBackward<E: AttnStorage>(
        dOut: StridedTensor<E>, q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, out: StridedTensor<E>,
        lse: StridedTensor<Float>, boundariesQ: SequenceBoundaries, boundariesK: SequenceBoundaries, maxSeqlenQ: Int,
        maxSeqlenK: Int, alibiSlopes: Slopes? = nil, dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>,
        dV: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads, useReference: Bool = false
    ) throws {
        try checkBackward(dOut: dOut, q: q, k: k, v: v, out: out, dQ: dQ, dK: dK, dV: dV)
        let writes = dQ.elementCount > 0 || dK.elementCount > 0 || dV.elementCount > 0
        let (forward, offsetsQ, offsetsK) = try varlenPlan(
            q: q, k: k, v: v, boundariesQ: boundariesQ, boundariesK: boundariesK, maxSeqlenQ: maxSeqlenQ,
            maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes, out: out.assumingMutable, lse: lse.assumingMutable,
            writesNothing: !writes, computesInFloat: E.self != Double.self)
        let gradient = try ReadableOperand(dOut)
        defer { gradient.deallocate() }
        let gradients: [AttentionUnit<E>]
        do {
            gradients = try varlenUnits(q: dQ.readOnly, k: dK.readOnly, v: dV.readOnly, boundariesQ: boundariesQ,
                                        boundariesK: boundariesK, maxSeqlenQ: maxSeqlenQ, maxSeqlenK: maxSeqlenK,
                                        alibiSlopes: alibiSlopes, out: gradient.view.assumingMutable, lse: nil,
                                        writesNothing: !writes, computesInFloat: E.self != Double.self)
        } catch let error as AttnError {
            throw error.renamingTensors(["q": "dq", "k": "dk", "v": "dv", "out": "dout"])
        }
        // Rows past the last sequence belong to no unit.
        let covered = forward.isEmpty ? (0, 0) : (offsetsQ.last ?? 0, offsetsK.last ?? 0)
        try finish(forward: forward, gradients: gradients, headDim: q.shape[2], valueDim: v.shape[2],
                   dQ: dQ, dK: dK, dV: dV, rowsCovered: covered, threads: threads, useReference: useReference)
    }

    /// The rules the backward adds to the forward's: no int8 path (its
    /// quantization has no gradient), and gradients shaped as their inputs.
    func checkBackward<E>(dOut: StridedTensor<E>, q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                          out: StridedTensor<E>, dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>,
                          dV: MutableStridedTensor<E>) throws {
        guard int8 == nil else {
            throw AttnError.invalidArgument(argument: "int8", rule: "has no backward pass: quantized QKᵀ is forward-only")
        }
        try AttentionBackward.checkGradients(
            [("dout", dOut.shape, dOut.strides, dOut.base != nil, "out", out.shape),
             ("dq", dQ.shape, dQ.strides, dQ.base != nil, "q", q.shape),
             ("dk", dK.shape, dK.strides, dK.base != nil, "k", k.shape),
             ("dv", dV.shape, dV.strides, dV.base != nil, "v", v.shape)],
            writable: [("dq", dQ.shape, dQ.strides), ("dk", dK.shape, dK.strides), ("dv", dV.shape, dV.strides)])
    }

    func finish<E: AttnStorage>(forward: [AttentionUnit<E>], gradients: [AttentionUnit<E>], headDim: Int, valueDim: Int,
                                dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>, dV: MutableStridedTensor<E>,
                                rowsCovered: (queries: Int, keys: Int), threads: Int, useReference: Bool) throws {
        // The engine writes every row of every unit and group; the rest is zero.
        AttentionBackward.zero(dQ, rowsFrom: rowsCovered.queries)
        AttentionBackward.zero(dK, rowsFrom: rowsCovered.keys)
        AttentionBackward.zero(dV, rowsFrom: rowsCovered.keys)
        try AttentionBackward.run(AttentionBackward.problem(forward: forward, gradients: gradients),
                                  options: attentionOptions(headDim: headDim, valueDim: valueDim),
                                  threads: threads, useReference: useReference)
    }
}

extension ScaledDotProductAttention {
    /// torch SDPA's backward (dropout regenerated from `seed`):
    ///     dout, out: (N..., Hq, L, Ev)   lse: (N..., Hq, L) fp32, as the forward returned it
    ///     dquery, dkey, dvalue: the shapes of query, key, value (written; dkey and dvalue
    ///     summed over each GQA group). The mask gets no gradient.
    public func backward<E: AttnStorage>(
        dOut: StridedTensor<E>, query: StridedTensor<E>, key: StridedTensor<E>, value: StridedTensor<E>,
        mask: SDPAMask<E>? = nil, out: StridedTensor<E>, lse: StridedTensor<Float>, dQuery: MutableStridedTensor<E>,
        dKey: MutableStridedTensor<E>, dValue: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads,
        useReference: Bool = false
    ) throws {
        try AttentionBackward.checkGradients(
            [("dout", dOut.shape, dOut.strides, dOut.base != nil, "out", out.shape), ("dquery", dQuery.shape, dQuery.strides, dQuery.base != nil, "query", query.shape),
             ("dkey", dKey.shape, dKey.strides, dKey.base != nil, "key", key.shape), ("dvalue", dValue.shape, dValue.strides, dValue.base != nil, "value", value.shape)],
            writable: [("dquery", dQuery.shape, dQuery.strides), ("dkey", dKey.shape, dKey.strides),
                       ("dvalue", dValue.shape, dValue.strides)])
        let (forward, options) = try plan(query: query, key: key, value: value, mask: mask, out: out.assumingMutable,
                                          lse: lse.assumingMutable)
        let gradient = try ReadableOperand(dOut)
        defer { gradient.deallocate() }
        let gradients: [AttentionUnit<E>]
        do {
            gradients = try plan(query: dQuery.readOnly, key: dKey.readOnly, value: dValue.readOnly, mask: mask,
                                 out: gradient.view.assumingMutable).0
        } catch let error as AttnError {
            throw error.renamingTensors(["query": "dquery", "key": "dkey", "value": "dvalue", "out": "dout"])
        }
        if forward.isEmpty {   // out has no elements: nothing flows back
            AttentionBackward.zero(dQuery)
            AttentionBackward.zero(dKey)
            AttentionBackward.zero(dValue)
        }
        try AttentionBackward.run(AttentionBackward.problem(forward: forward, gradients: gradients), options: options,
                                  threads: threads, useReference: useReference)
    }
}
