import AttnKitCore

/// The AFT kernel for one validated call; T is the compute type (Float, or Double for f64).
///
/// Full and local: per block of queries, A[t, t'] = e^(W[t,t'] − max_t' W[t,·]) over the keys
/// the block sees and B = [e^(K − max K) ⊙ V | e^(K − max K)], so one GEMM A·B gives the
/// numerators and the denominators of the whole block. Simple: two passes over the tokens
/// per feature (one running pass when causal), O(T·d).
struct AFTKernel<T: AttentionScalar, E: AttnStorage> {
    static var rowBlock: Int { 64 }
    static var featureBlock: Int { 128 }
    /// A denominator below this has lost precision to the shifts: recompute it exactly.
    static var tiny: T { T.self == Double.self ? T(0x1p-1000 as Double) : T(0x1p-100 as Float) }

    let p: AFTAttention.Problem
    let q, k, v: StridedTensor<E>
    let bias: AFTAttention.PositionBias<E>
    let out: MutableStridedTensor<E>

    func run(threads: Int) throws {
        guard p.batch > 0, p.length > 0, p.features > 0 else { return }
        _ = blasSingleThreaded
        if case .simple = p.variant { return try runSimple(threads: threads) }
        try runBanded(threads: threads)
    }

    // MARK: - aft_simple

    /// Row `t` of batch `b` of a [B, T, d] tensor, features c0 ..< c0+width, into `row`.
    @inline(__always) func load(_ tensor: StridedTensor<E>, _ b: Int, _ t: Int, _ c0: Int, _ width: Int,
                                into row: UnsafeMutablePointer<T>) {
        loadRow(tensor.data + (b &* tensor.strides[0] &+ t &* tensor.strides[1] &+ c0 &* tensor.strides[2]),
                stride: tensor.strides[2], count: width, into: row)
    }

    /// out[b, t, c0 ..< c0+width] = σ(q[b, t, ·]) · mean[·]; `gate` is scratch.
    @inline(__always) func storeGated(_ b: Int, _ t: Int, _ c0: Int, _ width: Int, mean: UnsafePointer<T>,
                                      gate: UnsafeMutablePointer<T>) {
        load(q, b, t, c0, width, into: gate)
        for c in 0..<width { gate[c] = -gate[c] }
        exponentiate(gate, count: width)
        for c in 0..<width { gate[c] = mean[c] / (1 + gate[c]) }
        storeRow(UnsafePointer(gate), count: width,
                 into: out.data + (b &* out.strides[0] &+ t &* out.strides[1] &+ c0 &* out.strides[2]),
                 stride: out.strides[2])
    }

    func runSimple(threads: Int) throws {
        let blocks = (p.features + Self.featureBlock - 1) / Self.featureBlock
        let tasks = p.batch &* blocks
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let scratch = try PerWorker<T>(workers: workers, count: 6 &* Self.featureBlock)
        defer { scratch.deallocate() }
        parallelFor(count: tasks, threads: workers) { task, worker in
            let b = task / blocks, c0 = (task % blocks) &* Self.featureBlock
            let width = Swift.min(Self.featureBlock, self.p.features &- c0)
            let buffer = scratch[worker]
            let rows = (0..<6).map { buffer + $0 &* Self.featureBlock }
            if self.p.causal {
                self.simpleCausal(b, c0, width, rows)
            } else {
                self.simpleWhole(b, c0, width, rows)
            }
        }
    }

    /// Every token sees every key: one weighted mean per feature, shifted by its max over tokens.
    func simpleWhole(_ b: Int, _ c0: Int, _ width: Int, _ rows: [UnsafeMutablePointer<T>]) {
        let top = rows[0], numerator = rows[1], denominator = rows[2], x = rows[3], values = rows[4]
        top.update(repeating: -T.infinity, count: width)
        for t in 0..<p.length {
            load(k, b, t, c0, width, into: x)
            // A NaN is skipped here and reaches the output through its own e^(NaN − m).
            for c in 0..<width { top[c] = x[c] > top[c] ? x[c] : top[c] }
        }
        for c in 0..<width where top[c] == -T.infinity { top[c] = 0 }
        numerator.update(repeating: 0, count: width)
        denominator.update(repeating: 0, count: width)
        for t in 0..<p.length {
            load(k, b, t, c0, width, into: x)
            for c in 0..<width { x[c] -= top[c] }
            exponentiate(x, count: width)
            load(v, b, t, c0, width, into: values)
            for c in 0..<width {
                numerator[c] += x[c] * values[c]
                denominator[c] += x[c]
            }
        }
        for c in 0..<width { numerator[c] = denominator[c] == 0 ? 0 : numerator[c] / denominator[c] }
        for t in 0..<p.length { storeGated(b, t, c0, width, mean: numerator, gate: x) }
    }

    /// Causal: running sums over the prefix, rescaled whenever a feature's max grows.
    func simpleCausal(_ b: Int, _ c0: Int, _ width: Int, _ rows: [UnsafeMutablePointer<T>]) {
        let top = rows[0], numerator = rows[1], denominator = rows[2], x = rows[3], values = rows[4]
        let rescale = rows[5]
        top.update(repeating: -T.infinity, count: width)
        numerator.update(repeating: 0, count: width)
        denominator.update(repeating: 0, count: width)
        for t in 0..<p.length {
            load(k, b, t, c0, width, into: x)
            for c in 0..<width {
                let old = top[c], new = x[c] > old ? x[c] : old
                rescale[c] = old == -T.infinity ? -T.infinity : old - new
                x[c] = x[c] == -T.infinity ? -T.infinity : x[c] - new
                top[c] = new
            }
            exponentiate(rescale, count: width)
            exponentiate(x, count: width)
            load(v, b, t, c0, width, into: values)
            for c in 0..<width {
                numerator[c] = numerator[c] * rescale[c] + x[c] * values[c]
                denominator[c] = denominator[c] * rescale[c] + x[c]
                values[c] = denominator[c] == 0 ? 0 : numerator[c] / denominator[c]
            }
            storeGated(b, t, c0, width, mean: values, gate: x)
        }
    }

    // MARK: - aft_full and aft_local

    struct Scratch {
        let weights, keys, sums, factors, maxima, gate: UnsafeMutablePointer<T>
        let cached: UnsafeMutablePointer<Int>   // (batch, lo, hi) of the B in `keys`
    }

    func runBanded(threads: Int) throws {
        let blocks = (p.length + Self.rowBlock - 1) / Self.rowBlock
        let tasks = try checkedProduct(p.batch, blocks, what: "q")
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let d = p.features
        let rank: Int
        if case let .lowRank(u, _) = bias { rank = u.shape[1] } else { rank = 0 }
        let weights = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, p.length, what: "q"))
        defer { weights.deallocate() }
        let keys = try PerWorker<T>(workers: workers, count: try checkedProduct(p.length, 2, d, what: "k"))
        defer { keys.deallocate() }
        let sums = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, 2, d, what: "q"))
        defer { sums.deallocate() }
        let factors = try PerWorker<T>(workers: workers,
                                       count: try checkedProduct(Self.rowBlock &+ p.length, Swift.max(rank, 1), what: "w_u"))
        defer { factors.deallocate() }
        let rows = try PerWorker<T>(workers: workers, count: try checkedProduct(2, d, what: "q"))
        defer { rows.deallocate() }
        let cached = try PerWorker<Int>(workers: workers, count: 3)
        defer { cached.deallocate() }
        for worker in 0..<workers { cached[worker].update(repeating: -1, count: 3) }
        parallelFor(count: tasks, threads: workers) { task, worker in
            let scratch = Scratch(weights: weights[worker], keys: keys[worker], sums: sums[worker],
                                  factors: factors[worker], maxima: rows[worker], gate: rows[worker] + d,
                                  cached: cached[worker])
            self.runBlock(b: task / blocks, t0: (task % blocks) &* Self.rowBlock, rank: rank, scratch: scratch)
        }
    }

    func runBlock(b: Int, t0: Int, rank: Int, scratch: Scratch) {
        let d = p.features, rows = Swift.min(Self.rowBlock, p.length &- t0)
        let range = p.keyRange(t0, rows)
        let n = range.count, lo = range.lowerBound
        if scratch.cached[0] != b || scratch.cached[1] != lo || scratch.cached[2] != range.upperBound {
            fillKeys(b: b, range: range, maxima: scratch.maxima, into: scratch.keys)
            scratch.cached[0] = b; scratch.cached[1] = lo; scratch.cached[2] = range.upperBound
        }
        fillWeights(t0: t0, rows: rows, range: range, rank: rank, scratch: scratch)
        T.gemm(m: rows, n: 2 &* d, k: n, alpha: 1, a: scratch.weights, lda: n, b: scratch.keys, ldb: 2 &* d,
               transposeB: false, beta: 0, c: scratch.sums, ldc: 2 &* d)
        for r in 0..<rows {
            let t = t0 &+ r, row = scratch.sums + r &* 2 &* d
            for c in 0..<d {
                let denominator = row[d &+ c]
                row[c] = denominator >= Self.tiny && denominator.isFinite
                    ? row[c] / denominator : T(exactMean(b: b, t: t, c: c, range: range))
            }
            storeGated(b, t, 0, d, mean: row, gate: scratch.gate)
        }
    }

    /// B = [e^(K − m) ⊙ V | e^(K − m)] over the keys in `range`, m the max of K there per feature.
    func fillKeys(b: Int, range: Range<Int>, maxima: UnsafeMutablePointer<T>, into keys: UnsafeMutablePointer<T>) {
        let d = p.features, lo = range.lowerBound
        maxima.update(repeating: -T.infinity, count: d)
        for (j, t) in range.enumerated() {
            let row = keys + j &* 2 &* d
            load(k, b, t, 0, d, into: row + d)
            for c in 0..<d { maxima[c] = row[d &+ c] > maxima[c] ? row[d &+ c] : maxima[c] }   // NaN: via its own exp
        }
        for c in 0..<d where maxima[c] == -T.infinity { maxima[c] = 0 }
        for j in 0..<range.count {
            let row = keys + j &* 2 &* d
            for c in 0..<d { row[d &+ c] -= maxima[c] }
            exponentiate(row + d, count: d)
            load(v, b, lo &+ j, 0, d, into: row)
            for c in 0..<d { row[c] *= row[d &+ c] }
        }
    }

    /// A[r, j] = e^(W[t, lo+j] − max W[t, ·]) for the keys query t sees, 0 for the others.
    func fillWeights(t0: Int, rows: Int, range: Range<Int>, rank: Int, scratch: Scratch) {
        let n = range.count, lo = range.lowerBound, a = scratch.weights
        switch bias {
        case let .dense(w):
            for r in 0..<rows {
                let base = w.data + (t0 &+ r) &* w.strides[0]
                for j in 0..<n { a[r &* n &+ j] = toCompute(base[(lo &+ j) &* w.strides[1]], as: T.self) }
            }
        case let .lowRank(u, w):
            let us = Strided2D(base: u.data + t0 &* u.strides[0], rowStride: u.strides[0], colStride: u.strides[1])
            let ws = Strided2D(base: w.data + lo &* w.strides[0], rowStride: w.strides[0], colStride: w.strides[1])
            let (uTile, ldu) = blasOperand(us, rows: rows, cols: rank, scratch: scratch.factors)
            let (wTile, ldw) = blasOperand(ws, rows: n, cols: rank, scratch: scratch.factors + rows &* rank)
            if rank > 0 {
                T.gemm(m: rows, n: n, k: rank, alpha: 1, a: uTile, lda: ldu, b: wTile, ldb: ldw, transposeB: true,
                       beta: 0, c: a, ldc: n)
            } else {
                a.update(repeating: 0, count: rows &* n)
            }
        case .none:
            a.update(repeating: 0, count: rows &* n)
        }
        for r in 0..<rows {
            let t = t0 &+ r, row = a + r &* n
            var top = -T.infinity
            for j in 0..<n {
                let (allowed, biased) = p.sees(t, lo &+ j)
                if !allowed { row[j] = -T.infinity; continue }
                if !biased { row[j] = 0 }
                if !(row[j] <= top) { top = row[j] }
            }
            if top == -T.infinity { top = 0 }
            for j in 0..<n { row[j] -= top }   // excluded keys stay −inf: e^−inf = 0
            exponentiate(row, count: n)
        }
    }

    /// Y[t,c] / σ(Q[t,c]) in fp64, shifted by the exact max of W[t,t'] + K[t',c] over the keys t sees.
    func exactMean(b: Int, t: Int, c: Int, range: Range<Int>) -> Double {
        func exponent(_ key: Int) -> Double? {
            let (allowed, biased) = p.sees(t, key)
            guard allowed else { return nil }
            return (biased ? biasValue(t, key) : 0) + E.toDouble(k.data[b &* k.strides[0] &+ key &* k.strides[1] &+ c &* k.strides[2]])
        }
        var top = -Double.infinity
        for key in range { if let x = exponent(key), !(x <= top) { top = x } }
        if top == -.infinity { return 0 }
        var numerator = 0.0, denominator = 0.0
        for key in range {
            guard let x = exponent(key) else { continue }
            let e = Double.exponential(x - top)
            numerator += e * E.toDouble(v.data[b &* v.strides[0] &+ key &* v.strides[1] &+ c &* v.strides[2]])
            denominator += e
        }
        return numerator / denominator
    }

    func biasValue(_ t: Int, _ key: Int) -> Double {
        switch bias {
        case let .dense(w): return E.toDouble(w.data[t &* w.strides[0] &+ key &* w.strides[1]])
        case let .lowRank(u, w):
            var sum = 0.0
            for i in 0..<u.shape[1] {
                sum += E.toDouble(u.data[t &* u.strides[0] &+ i &* u.strides[1]])
                    * E.toDouble(w.data[key &* w.strides[0] &+ i &* w.strides[1]])
            }
            return sum
        case .none: return 0
        }
    }
}
