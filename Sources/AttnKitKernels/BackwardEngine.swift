// Compiled once per ISA tier (see Package.swift); the other kernel folders
// link to this file.
#if canImport(Glibc)
import Glibc
#endif
import AttnKitCore

/// FlashAttention-2's backward pass (Dao 2023, algorithm 2), deterministic.
///
/// From Q, K, V, the forward's O and lse, and dO:
///   P  = exp(S − lse), S recomputed tile by tile with the forward's score
///        transforms (softcap, ALiBi, masks, window), so no L×S matrix exists;
///   Δᵢ = Σₑ dO[i][e]·O[i][e];
///   dP = dO·Vᵀ, times dropout's keep mask and 1/(1 − p);
///   dS = P ∘ (dP − Δ), times 1 − tanh² under a softcap;
///   dV += P_droppedᵀ·dO,   dK += scale·dSᵀ·Q,   dQ += scale·dS·K.
///
/// Two passes, so that no two tasks ever add into the same rows:
///   1. one task per (group, block of 64 keys): dK and dV of those keys,
///      summed over the group's query heads in unit order, and over their
///      query blocks in order;
///   2. one task per (unit, block of 64 query rows): dQ over the key tiles in order.
/// Both recompute S and dP (7 tile products instead of 5), and in exchange
/// every output row's arithmetic is fixed by the problem alone: the same bits
/// for any thread count. Memory: O(tile) per worker, plus Δ (one float per row).
///
/// Tiles are kept as Sᵀ[key][row] with 64 row lanes, the layout of FlashEngine,
/// so the forward's transformScores applies unchanged.
package enum BackwardEngine {
    static let tile = 64
    /// The one-pass schedule needs this many groups (tasks) ...
    static let singlePassGroups = 8
    /// ... and a group's fp32 dQ sums and packed query tiles in at most this many
    /// floats (32 MiB) per worker.
    static let singlePassFloats = 8 << 20

    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    package static func run<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions,
                                            threads: Int) throws {
        let units = problem.units
        if units.isEmpty { return }
        // Δ per unit row, and where each unit's rows start in it.
        var deltaStart = [Int](repeating: 0, count: units.count + 1)
        for (index, unit) in units.enumerated() {
            deltaStart[index + 1] = deltaStart[index] + unit.forward.queries
        }
        let delta = try Workspace<Float>(count: Swift.max(1, deltaStart[units.count]))
        defer { delta.deallocate() }
        let layout = Layout(options: options)
        let workers = Swift.max(1, threads)
        let scratch = try PerWorker<Float>(workers: workers, count: layout.floats)
        defer { scratch.deallocate() }

        let deltaBase = delta.pointer
        units.withUnsafeBufferPointer { list in
            deltaStart.withUnsafeBufferPointer { starts in
                parallelFor(count: list.count, threads: workers) { index, _ in
                    computeDelta(list[index], valueDim: options.valueDim, into: deltaBase + starts[index])
                }
            }
        }

        let groups = problem.groups
        let paddedDim = layout.paddedDim
        // One pass per group when there are enough groups to share out and their
        // dQ sums fit: a task then owns every row its dQ touches (5 tile products
        // instead of 7). The choice depends on the problem only, never on the
        // thread count, so the bits do not either.
        let groupRows = groups.map { $0.reduce(0) { $0 + units[$1].forward.queries } }
        // A group's fp32 dQ sums, then its query blocks' packed tiles.
        let tileFloats = layout.queryTileFloats
        let groupFloats = zip(groups, groupRows).map { group, rows in
            rows &* paddedDim &+ group.reduce(0) { $0 + (units[$1].forward.queries + tile - 1) / tile } &* tileFloats
        }
        let largestGroup = groupFloats.max() ?? 0
        if groups.count >= singlePassGroups && largestGroup <= singlePassFloats {
            let queryGradients = try PerWorker<Float>(workers: workers, count: Swift.max(1, largestGroup))
            defer { queryGradients.deallocate() }
            units.withUnsafeBufferPointer { list in
                deltaStart.withUnsafeBufferPointer { starts in
                    parallelFor(count: groups.count, threads: Swift.min(workers, groups.count)) { index, worker in
                        groupTask(list, group: groups[index], rows: groupRows[index], options: options, delta: deltaBase,
                                  deltaStart: starts, scratch: layout.scratch(scratch[worker]),
                                  queryGradients: queryGradients[worker])
                    }
                }
            }
            return
        }
        // Pass 1: dK and dV, per (group, key block).
        var keyTasks: [(group: Int32, block: Int32)] = []
        for (groupIndex, group) in problem.groups.enumerated() {
            guard let first = group.first else { continue }
            let keys = units[first].forward.keys
            for block in 0..<((keys + tile - 1) / tile) { keyTasks.append((Int32(groupIndex), Int32(block))) }
        }
        // Pass 2: dQ, per (unit, query block).
        var queryTasks: [(unit: Int32, block: Int32)] = []
        for (index, unit) in units.enumerated() {
            for block in 0..<((unit.forward.queries + tile - 1) / tile) { queryTasks.append((Int32(index), Int32(block))) }
        }
        units.withUnsafeBufferPointer { list in
            deltaStart.withUnsafeBufferPointer { starts in
                keyTasks.withUnsafeBufferPointer { tasks in
                    parallelFor(count: tasks.count, threads: Swift.min(workers, tasks.count)) { task, worker in
                        let (group, block) = tasks[task]
                        keyBlock(list, group: groups[Int(group)], block: Int(block), options: options, delta: deltaBase,
                                 deltaStart: starts, scratch: layout.scratch(scratch[worker]), queryGradients: nil)
                    }
                }
                queryTasks.withUnsafeBufferPointer { tasks in
                    parallelFor(count: tasks.count, threads: Swift.min(workers, tasks.count)) { task, worker in
                        let (unit, block) = tasks[task]
                        queryBlock(list[Int(unit)], block: Int(block), options: options,
                                   delta: deltaBase + starts[Int(unit)], scratch: layout.scratch(scratch[worker]))
                    }
                }
            }
        }
    }

    /// Δᵢ = Σₑ dO[i][e]·O[i][e], in fp32, e in order.
    static func computeDelta<E: AttnStorage>(_ unit: BackwardUnit<E>, valueDim: Int, into delta: UnsafeMutablePointer<Float>) {
        for row in 0..<unit.forward.queries {
            let gradient = unit.dOut.pointer(row, 0), output = unit.forward.out.pointer(row, 0)
            var sum: Float = 0
            for e in 0..<valueDim {
                sum += E.toFloat(gradient[e &* unit.dOut.colStride]) * E.toFloat(output[e &* unit.forward.out.colStride])
            }
            delta[row] = sum
        }
    }

    /// How one worker's scratch is carved up. Widths are padded to 16 with zeros.
    struct Layout {
        let dim: Int, valueDim: Int, paddedDim: Int, paddedValueDim: Int
        let floats: Int

        init(options: AttentionOptions) {
            dim = options.headDim; valueDim = options.valueDim
            paddedDim = (dim + 15) & ~15; paddedValueDim = (valueDim + 15) & ~15
            // Q rows, Qᵀ, K rows, dK, a block's dK; dO rows, dOᵀ, V rows, dV, a block's dV;
            // Sᵀ, dPᵀ, softcap factors; lse, Δ.
            floats = 5 * tile * paddedDim + 5 * tile * paddedValueDim + 3 * tile * tile + 2 * tile
        }

        /// Floats of one query block's packed tiles (Scratch.queryTiles).
        var queryTileFloats: Int { 2 * tile * paddedDim + 2 * tile * paddedValueDim + 2 * tile }

        func scratch(_ base: UnsafeMutablePointer<Float>) -> Scratch {
            var next = base
            func take(_ count: Int) -> UnsafeMutablePointer<Float> { defer { next += count }; return next }
            return Scratch(dim: dim, valueDim: valueDim, paddedDim: paddedDim, paddedValueDim: paddedValueDim,
                           queryRows: take(tile * paddedDim), queryT: take(tile * paddedDim),
                           keyRows: take(tile * paddedDim), keyGradient: take(tile * paddedDim),
                           partialKeyGradient: take(tile * paddedDim), partialValueGradient: take(tile * paddedValueDim),
                           gradientRows: take(tile * paddedValueDim), gradientT: take(tile * paddedValueDim),
                           valueRows: take(tile * paddedValueDim), valueGradient: take(tile * paddedValueDim),
                           scoresT: take(tile * tile), gradientScoresT: take(tile * tile), capFactorT: take(tile * tile),
                           lse: take(tile), delta: take(tile))
        }
    }

    struct Scratch {
        let dim: Int, valueDim: Int, paddedDim: Int, paddedValueDim: Int
        let queryRows: UnsafeMutablePointer<Float>      // [64][paddedDim]
        let queryT: UnsafeMutablePointer<Float>         // [paddedDim][64]
        let keyRows: UnsafeMutablePointer<Float>        // [64][paddedDim]
        let keyGradient: UnsafeMutablePointer<Float>    // [64][paddedDim]: dK (pass 1) or dQ (pass 2)
        // One query block's (pass 1) or key tile's (pass 2) terms, summed on their own
        // before they join the total: two-level sums, whose rounding error grows with
        // 64 + n/64 terms instead of n.
        let partialKeyGradient: UnsafeMutablePointer<Float>    // [64][paddedDim]
        let partialValueGradient: UnsafeMutablePointer<Float>  // [64][paddedValueDim]
        let gradientRows: UnsafeMutablePointer<Float>   // [64][paddedValueDim]: dO
        let gradientT: UnsafeMutablePointer<Float>      // [paddedValueDim][64]: dOᵀ
        let valueRows: UnsafeMutablePointer<Float>      // [64][paddedValueDim]
        let valueGradient: UnsafeMutablePointer<Float>  // [64][paddedValueDim]: dV
        let scoresT: UnsafeMutablePointer<Float>        // [64 keys][64 rows]: S, then P (dropped)
        let gradientScoresT: UnsafeMutablePointer<Float> // [64 keys][64 rows]: dP, then dS
        let capFactorT: UnsafeMutablePointer<Float>     // [64 keys][64 rows]: 1 − tanh² under a softcap
        let lse: UnsafeMutablePointer<Float>            // [64]
        let delta: UnsafeMutablePointer<Float>          // [64]

        /// Floats of one query block's tiles (Q, Qᵀ, dO, dOᵀ, lse, Δ) packed back to back.
        var queryTileFloats: Int { 2 &* tile &* paddedDim &+ 2 &* tile &* paddedValueDim &+ 2 &* tile }

        /// The same scratch with a query block's tiles at `base` (a group's packs).
        func queryTiles(at base: UnsafeMutablePointer<Float>) -> Scratch {
            let qT = base + tile &* paddedDim, dO = qT + tile &* paddedDim, dOT = dO + tile &* paddedValueDim
            let lse = dOT + tile &* paddedValueDim
            return Scratch(dim: dim, valueDim: valueDim, paddedDim: paddedDim, paddedValueDim: paddedValueDim,
                           queryRows: base, queryT: qT, keyRows: keyRows, keyGradient: keyGradient,
                           partialKeyGradient: partialKeyGradient, partialValueGradient: partialValueGradient,
                           gradientRows: dO, gradientT: dOT, valueRows: valueRows, valueGradient: valueGradient,
                           scoresT: scoresT, gradientScoresT: gradientScoresT, capFactorT: capFactorT,
                           lse: lse, delta: lse + tile)
        }

        /// The same scratch with K and V rows starting `offset` rows into their tiles.
        func keysFrom(_ offset: Int) -> Scratch {
            Scratch(dim: dim, valueDim: valueDim, paddedDim: paddedDim, paddedValueDim: paddedValueDim,
                    queryRows: queryRows, queryT: queryT, keyRows: keyRows + offset &* paddedDim, keyGradient: keyGradient,
                    partialKeyGradient: partialKeyGradient, partialValueGradient: partialValueGradient,
                    gradientRows: gradientRows, gradientT: gradientT, valueRows: valueRows + offset &* paddedValueDim,
                    valueGradient: valueGradient, scoresT: scoresT, gradientScoresT: gradientScoresT,
                    capFactorT: capFactorT, lse: lse, delta: delta)
        }
    }

    /// Copies `count` rows of `width` elements into [64][paddedWidth] fp32 rows,
    /// zero past `width` and past `count`; with `transposed`, also as [paddedWidth][64].
    static func pack<E: AttnStorage>(_ source: Strided2D<E>, start: Int, count: Int, width: Int, paddedWidth: Int,
                                     rows: UnsafeMutablePointer<Float>, transposed: UnsafeMutablePointer<Float>?) {
        rows.update(repeating: 0, count: tile &* paddedWidth)
        transposed?.update(repeating: 0, count: tile &* paddedWidth)
        for r in 0..<count {
            let from = source.pointer(start &+ r, 0), to = rows + r &* paddedWidth
            for d in 0..<width { to[d] = E.toFloat(from[d &* source.colStride]) }
            if let transposed {
                for d in 0..<width { transposed[d &* tile &+ r] = to[d] }
            }
        }
    }

    /// acc[i][0..<width] += Σ_j w(i, j)·x[j][0..<width] for i < n, j < m, with
    /// w(i, j) = weights[i·weightRow + j·weightColumn]; width is a multiple of 16.
    /// With `skipZeros`, a zero weight skips its term, so a masked key's
    /// NaN or Inf row never reaches a gradient (as in the forward's P·V).
    @inline(__always)
    static func accumulate(_ acc: UnsafeMutablePointer<Float>, accStride: Int, n: Int, weights: UnsafePointer<Float>,
                           weightRow: Int, weightColumn: Int, m: Int, x: UnsafePointer<Float>, xStride: Int,
                           width: Int, skipZeros: Bool) {
        for i in 0..<n {
            let target = acc + i &* accStride, w = weights + i &* weightRow
            var e = 0
            while e &+ 64 <= width {
                var a0 = load16(target + e), a1 = load16(target + (e &+ 16))
                var a2 = load16(target + (e &+ 32)), a3 = load16(target + (e &+ 48))
                for j in 0..<m {
                    let weight = w[j &* weightColumn]
                    if skipZeros && weight == 0 { continue }
                    let b = SIMD16<Float>(repeating: weight), row = x + (j &* xStride &+ e)
                    a0 = multiplyAdd(b, load16(row), a0); a1 = multiplyAdd(b, load16(row + 16), a1)
                    a2 = multiplyAdd(b, load16(row + 32), a2); a3 = multiplyAdd(b, load16(row + 48), a3)
                }
                store16(a0, target + e); store16(a1, target + (e &+ 16))
                store16(a2, target + (e &+ 32)); store16(a3, target + (e &+ 48))
                e &+= 64
            }
            while e < width {
                var a0 = load16(target + e)
                for j in 0..<m {
                    let weight = w[j &* weightColumn]
                    if skipZeros && weight == 0 { continue }
                    a0 = multiplyAdd(SIMD16(repeating: weight), load16(x + (j &* xStride &+ e)), a0)
                }
                store16(a0, target + e)
                e &+= 16
            }
        }
    }

    /// total[i] += part[i] for i < count (a multiple of 16).
    @inline(__always)
    static func add(_ part: UnsafePointer<Float>, into total: UnsafeMutablePointer<Float>, count: Int) {
        for index in stride(from: 0, to: count, by: 16) { store16(load16(total + index) + load16(part + index), total + index) }
    }

    /// For one (query block, key range) pair whose Q/dO (rows and transposed),
    /// lse, Δ, K rows and V rows are packed: Sᵀ becomes the dropped P (what dV
    /// takes) and dPᵀ becomes scale·dS (what dK and dQ take).
    static func probabilitiesAndGradients<E: AttnStorage>(_ unit: AttentionUnit<E>, options: AttentionOptions,
                                                          rowStart: Int, rows: Int, keyStart: Int, keys: Int,
                                                          scratch s: Scratch) {
        // Sᵀ[c][r] = scale·K[c]·Q[r]; dPᵀ[c][r] = V[c]·dO[r].
        s.scoresT.update(repeating: 0, count: keys &* tile)
        s.gradientScoresT.update(repeating: 0, count: keys &* tile)
        accumulate(s.scoresT, accStride: tile, n: keys, weights: s.keyRows, weightRow: s.paddedDim, weightColumn: 1,
                   m: s.dim, x: s.queryT, xStride: tile, width: tile, skipZeros: false)
        accumulate(s.gradientScoresT, accStride: tile, n: keys, weights: s.valueRows, weightRow: s.paddedValueDim,
                   weightColumn: 1, m: s.valueDim, x: s.gradientT, xStride: tile, width: tile, skipZeros: false)
        let scale = SIMD16<Float>(repeating: options.scale)
        for index in stride(from: 0, to: keys &* tile, by: 16) { store16(load16(s.scoresT + index) * scale, s.scoresT + index) }
        // The forward's transforms: softcap here (its derivative is kept), the rest in FlashEngine's order.
        var transforms = options
        if options.softcap > 0 {
            let cap = SIMD16<Float>(repeating: options.softcap), inverseCap = SIMD16<Float>(repeating: 1 / options.softcap)
            let one = SIMD16<Float>(repeating: 1)
            for index in stride(from: 0, to: keys &* tile, by: 16) {
                let t = fastTanh(load16(s.scoresT + index) * inverseCap)
                store16(cap * t, s.scoresT + index)
                store16(one - t * t, s.capFactorT + index)
            }
            transforms.softcap = 0
        }
        FlashEngine.transformScores(unit, options: transforms, rowStart: rowStart, rows: rows,
                                    activeChunks: FlashEngine.chunks, tileStart: keyStart, tileKeys: keys, scores: s.scoresT)
        let dropKey = dropoutStreamKey(seed: options.seed, stream: unit.dropoutStream)
        let threshold = SIMD16<UInt32>(repeating: dropoutThreshold(options.dropoutP))
        let keepScale = SIMD16<Float>(repeating: options.dropoutP > 0 ? 1 / (1 - options.dropoutP) : 1)
        let lane = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let zero = SIMD16<Float>()
        for c in 0..<keys {
            for chunk in 0..<FlashEngine.chunks {
                let offset = c &* tile &+ chunk &* 16
                let lse = load16(s.lse + chunk &* 16), delta = load16(s.delta + chunk &* 16)
                let p = fastExp(load16(s.scoresT + offset) - lse)
                var dp = load16(s.gradientScoresT + offset)
                var dropped = p
                if options.dropoutP > 0 {
                    let rowIndex = lane &+ SIMD16(repeating: UInt32(truncatingIfNeeded: rowStart &+ chunk &* 16))
                    let bits = dropoutBits(key: dropKey, rows: rowIndex, col: UInt32(truncatingIfNeeded: keyStart &+ c))
                    let kept = bits .>= threshold
                    dropped = p * keepScale
                    dropped.replace(with: zero, where: .!kept)
                    dp = dp * keepScale
                    dp.replace(with: zero, where: .!kept)
                }
                var ds = p * (dp - delta)
                if options.softcap > 0 { ds = ds * load16(s.capFactorT + offset) }
                ds = ds * scale
                // A key P gives no weight gets no gradient, whatever its V or dP holds.
                ds.replace(with: zero, where: p .== zero)
                store16(dropped, s.scoresT + offset)
                store16(ds, s.gradientScoresT + offset)
            }
        }
    }

    /// Packs a query block's Q, dO, lse and Δ; lse is +inf (P = 0) past `rows`.
    static func packQueryBlock<E: AttnStorage>(_ unit: BackwardUnit<E>, rowStart: Int, rows: Int,
                                               delta: UnsafePointer<Float>, scratch s: Scratch) {
        pack(unit.forward.q, start: rowStart, count: rows, width: s.dim, paddedWidth: s.paddedDim,
             rows: s.queryRows, transposed: s.queryT)
        pack(unit.dOut, start: rowStart, count: rows, width: s.valueDim, paddedWidth: s.paddedValueDim,
             rows: s.gradientRows, transposed: s.gradientT)
        for r in 0..<tile {
            if r < rows, let lse = unit.forward.lse {
                s.lse[r] = lse[(rowStart &+ r) &* unit.forward.lseStride]
            } else {
                s.lse[r] = .infinity
            }
            s.delta[r] = r < rows ? delta[rowStart &+ r] : 0
        }
    }

    /// The one-pass schedule: all of a group's gradients, key block by key block;
    /// each block adds its dQ terms into `queryGradients` ([rows of the group's
    /// units, in order][paddedDim] fp32), written out at the end.
    static func groupTask<E: AttnStorage>(_ units: UnsafeBufferPointer<BackwardUnit<E>>, group: [Int], rows: Int,
                                          options: AttentionOptions, delta: UnsafePointer<Float>,
                                          deltaStart: UnsafeBufferPointer<Int>, scratch s: Scratch,
                                          queryGradients: UnsafeMutablePointer<Float>) {
        guard let first = group.first else { return }
        queryGradients.update(repeating: 0, count: rows &* s.paddedDim)
        // Every query block's tiles, packed once for all the key blocks.
        let packs = queryGradients + rows &* s.paddedDim
        var packed = 0
        for index in group {
            let unit = units[index]
            for block in 0..<((unit.forward.queries + tile - 1) / tile) {
                let rowStart = block &* tile
                packQueryBlock(unit, rowStart: rowStart, rows: Swift.min(tile, unit.forward.queries &- rowStart),
                               delta: delta + deltaStart[index], scratch: s.queryTiles(at: packs + packed &* s.queryTileFloats))
                packed &+= 1
            }
        }
        for block in 0..<((units[first].forward.keys + tile - 1) / tile) {
            keyBlock(units, group: group, block: block, options: options, delta: delta, deltaStart: deltaStart,
                     scratch: s, queryGradients: queryGradients, queryPacks: packs)
        }
        var offset = 0
        for index in group {
            let unit = units[index]
            for r in 0..<unit.forward.queries {
                let dq = unit.dQ.pointer(r, 0), row = queryGradients + (offset &+ r) &* s.paddedDim
                for d in 0..<s.dim { dq[d &* unit.dQ.colStride] = E.fromFloat(row[d]) }
            }
            offset &+= unit.forward.queries
        }
    }

    /// Pass 1: dK and dV of keys [block·64, +64) for every unit of `group`; with
    /// `queryGradients` (the one-pass schedule), also these keys' dQ terms.
    static func keyBlock<E: AttnStorage>(_ units: UnsafeBufferPointer<BackwardUnit<E>>, group: [Int], block: Int,
                                         options: AttentionOptions, delta: UnsafePointer<Float>,
                                         deltaStart: UnsafeBufferPointer<Int>, scratch s: Scratch,
                                         queryGradients: UnsafeMutablePointer<Float>?,
                                         queryPacks: UnsafeMutablePointer<Float>? = nil) {
        guard let firstIndex = group.first else { return }
        let first = units[firstIndex]
        let keyStart = block &* tile, keyCount = Swift.min(tile, first.forward.keys &- keyStart)
        s.keyGradient.update(repeating: 0, count: tile &* s.paddedDim)
        s.valueGradient.update(repeating: 0, count: tile &* s.paddedValueDim)
        pack(first.forward.k, start: keyStart, count: keyCount, width: s.dim, paddedWidth: s.paddedDim,
             rows: s.keyRows, transposed: nil)
        pack(first.forward.v, start: keyStart, count: keyCount, width: s.valueDim, paddedWidth: s.paddedValueDim,
             rows: s.valueRows, transposed: nil)
        var groupRow = 0, groupBlock = 0
        for index in group {
            let unit = units[index]
            defer {
                groupRow &+= unit.forward.queries
                groupBlock &+= (unit.forward.queries + tile - 1) / tile
            }
            for queryBlock in 0..<((unit.forward.queries + tile - 1) / tile) {
                let rowStart = queryBlock &* tile, rows = Swift.min(tile, unit.forward.queries &- rowStart)
                let range = FlashEngine.blockKeys(unit.forward, options: options, rowStart: rowStart)
                let low = Swift.max(keyStart, range.lowerBound), high = Swift.min(keyStart &+ keyCount, range.upperBound)
                if low >= high { continue }
                var tiles = s
                if let queryPacks {   // packed once per group (the one-pass schedule)
                    tiles = s.queryTiles(at: queryPacks + (groupBlock &+ queryBlock) &* s.queryTileFloats)
                } else {
                    packQueryBlock(unit, rowStart: rowStart, rows: rows, delta: delta + deltaStart[index], scratch: s)
                }
                let offset = low &- keyStart
                let keys = high &- low
                // The key rows of [low, high) start `offset` rows into the packed block.
                let view = tiles.keysFrom(offset)
                probabilitiesAndGradients(unit.forward, options: options, rowStart: rowStart, rows: rows, keyStart: low,
                                          keys: keys, scratch: view)
                // dV[c] += Σ_r P[r][c]·dO[r];  dK[c] += Σ_r dS[r][c]·Q[r]   (scale is in dS).
                s.partialValueGradient.update(repeating: 0, count: keys &* s.paddedValueDim)
                s.partialKeyGradient.update(repeating: 0, count: keys &* s.paddedDim)
                accumulate(s.partialValueGradient, accStride: s.paddedValueDim, n: keys,
                           weights: s.scoresT, weightRow: tile, weightColumn: 1, m: rows, x: view.gradientRows,
                           xStride: s.paddedValueDim, width: s.paddedValueDim, skipZeros: true)
                accumulate(s.partialKeyGradient, accStride: s.paddedDim, n: keys,
                           weights: s.gradientScoresT, weightRow: tile, weightColumn: 1, m: rows, x: view.queryRows,
                           xStride: s.paddedDim, width: s.paddedDim, skipZeros: true)
                add(s.partialValueGradient, into: s.valueGradient + offset &* s.paddedValueDim, count: keys &* s.paddedValueDim)
                add(s.partialKeyGradient, into: s.keyGradient + offset &* s.paddedDim, count: keys &* s.paddedDim)
                if let queryGradients {   // dQ[r] += Σ_c dS[r][c]·K[c] over these keys
                    s.partialKeyGradient.update(repeating: 0, count: rows &* s.paddedDim)
                    accumulate(s.partialKeyGradient, accStride: s.paddedDim, n: rows, weights: s.gradientScoresT,
                               weightRow: 1, weightColumn: tile, m: keys, x: view.keyRows, xStride: s.paddedDim,
                               width: s.paddedDim, skipZeros: true)
                    add(s.partialKeyGradient, into: queryGradients + (groupRow &+ rowStart) &* s.paddedDim,
                        count: rows &* s.paddedDim)
                }
            }
        }
        for c in 0..<keyCount {
            let dk = first.dK.pointer(keyStart &+ c, 0), dv = first.dV.pointer(keyStart &+ c, 0)
            for d in 0..<s.dim { dk[d &* first.dK.colStride] = E.fromFloat(s.keyGradient[c &* s.paddedDim &+ d]) }
            for e in 0..<s.valueDim { dv[e &* first.dV.colStride] = E.fromFloat(s.valueGradient[c &* s.paddedValueDim &+ e]) }
        }
    }

    /// Pass 2: dQ of rows [block·64, +64) of one unit.
    static func queryBlock<E: AttnStorage>(_ unit: BackwardUnit<E>, block: Int, options: AttentionOptions,
                                           delta: UnsafePointer<Float>, scratch s: Scratch) {
        let rowStart = block &* tile, rows = Swift.min(tile, unit.forward.queries &- rowStart)
        s.keyGradient.update(repeating: 0, count: tile &* s.paddedDim)
        let range = FlashEngine.blockKeys(unit.forward, options: options, rowStart: rowStart)
        if !range.isEmpty {
            packQueryBlock(unit, rowStart: rowStart, rows: rows, delta: delta, scratch: s)
            var keyStart = range.lowerBound
            while keyStart < range.upperBound {
                // Tiles aligned to multiples of 64 keys, as pass 1's blocks.
                let keyEnd = Swift.min(range.upperBound, (keyStart / tile &+ 1) &* tile)
                let keys = keyEnd &- keyStart
                pack(unit.forward.k, start: keyStart, count: keys, width: s.dim, paddedWidth: s.paddedDim,
                     rows: s.keyRows, transposed: nil)
                pack(unit.forward.v, start: keyStart, count: keys, width: s.valueDim, paddedWidth: s.paddedValueDim,
                     rows: s.valueRows, transposed: nil)
                probabilitiesAndGradients(unit.forward, options: options, rowStart: rowStart, rows: rows,
                                          keyStart: keyStart, keys: keys, scratch: s)
                // dQ[r] += Σ_c dS[r][c]·K[c]   (scale is in dS).
                s.partialKeyGradient.update(repeating: 0, count: rows &* s.paddedDim)
                accumulate(s.partialKeyGradient, accStride: s.paddedDim, n: rows, weights: s.gradientScoresT,
                           weightRow: 1, weightColumn: tile, m: keys, x: s.keyRows, xStride: s.paddedDim,
                           width: s.paddedDim, skipZeros: true)
                add(s.partialKeyGradient, into: s.keyGradient, count: rows &* s.paddedDim)
                keyStart = keyEnd
            }
        }
        for r in 0..<rows {
            let dq = unit.dQ.pointer(rowStart &+ r, 0)
            for d in 0..<s.dim { dq[d &* unit.dQ.colStride] = E.fromFloat(s.keyGradient[r &* s.paddedDim &+ d]) }
        }
    }
}
