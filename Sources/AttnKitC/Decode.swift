import AttnKit
import CAttnKitABI

private let indexDtypes = [Int32(ATTN_DTYPE_I32), Int32(ATTN_DTYPE_I64)]
private let cacheDtypes = [Int32(ATTN_DTYPE_F32), Int32(ATTN_DTYPE_F16), Int32(ATTN_DTYPE_BF16)]

/// An optional i32/i64 index tensor of `rank`, read into Ints.
private func indices(_ name: String, _ tensor: UnsafePointer<attn_tensor>?, rank: Int,
                     layout: String) throws -> (shape: [Int], values: [Int])? {
    guard let tensor else { return nil }
    let descriptor = try Descriptor(name, tensor, dtypes: indexDtypes)
    if Int(descriptor.dtype) == ATTN_DTYPE_I32 {
        return try readIndexValues(name, int32: descriptor.view(Int32.self), int64: nil, rank: rank, layout: layout)
    }
    return try readIndexValues(name, int32: nil, int64: descriptor.view(Int64.self), rank: rank, layout: layout)
}

/// The operands both KV-cache entries share, checked and converted; the caches'
/// dtypes are `cacheDtypes` (the float entry: q's; the int8 entry: i8).
private struct KVCacheOperands {
    let attention: KVCacheAttention
    let query, keys, values, output: Descriptor
    let newKeys, newValues, cos, sin, slopes, lse: Descriptor?
    let seqlens: [Int], batchIndex: [Int]?, leftpad: [Int]?
    let table: KVCacheAttention.BlockTable?

    init(_ params: UnsafePointer<attn_kvcache_params>?, _ q: UnsafePointer<attn_tensor>?,
         _ kCache: UnsafePointer<attn_tensor>?, _ vCache: UnsafePointer<attn_tensor>?,
         _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
         _ rotaryCos: UnsafePointer<attn_tensor>?, _ rotarySin: UnsafePointer<attn_tensor>?,
         _ cacheSeqlens: UnsafePointer<attn_tensor>?, _ cacheBatchIdx: UnsafePointer<attn_tensor>?,
         _ cacheLeftpad: UnsafePointer<attn_tensor>?, _ blockTable: UnsafePointer<attn_tensor>?,
         _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?,
         _ softmaxLse: UnsafePointer<attn_tensor>?, int8Cache: Bool) throws {
        let p = try readParams("params", params)
        try requireFlag("params->causal", p.causal)
        try requireFlag("params->has_scale", p.has_scale)
        try requireFlag("params->rotary_interleaved", p.rotary_interleaved)
        guard p.reserved == 0 else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "params->reserved must be 0, got \(p.reserved)")
        }
        query = try Descriptor("q", q, dtypes: cacheDtypes)
        let storedAs = int8Cache ? [Int32(ATTN_DTYPE_I8)] : cacheDtypes
        keys = try Descriptor("k_cache", kCache, dtypes: storedAs)
        values = try Descriptor("v_cache", vCache, dtypes: storedAs)
        output = try Descriptor("out", out, dtypes: cacheDtypes)
        newKeys = try k.map { try Descriptor("k", $0, dtypes: cacheDtypes) }
        newValues = try v.map { try Descriptor("v", $0, dtypes: cacheDtypes) }
        cos = try rotaryCos.map { try Descriptor("rotary_cos", $0, dtypes: cacheDtypes) }
        sin = try rotarySin.map { try Descriptor("rotary_sin", $0, dtypes: cacheDtypes) }
        if !int8Cache {
            for descriptor in [keys, values] { try descriptor.requireDtype(query.dtype, sameAs: "q") }
        }
        try values.requireDtype(keys.dtype, sameAs: "k_cache")
        try output.requireDtype(query.dtype, sameAs: "q")
        for descriptor in [newKeys, newValues, cos, sin] { try descriptor?.requireDtype(query.dtype, sameAs: "q") }
        slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        lse = try softmaxLse.map { try Descriptor("softmax_lse", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        guard let lengths = try indices("cache_seqlens", cacheSeqlens, rank: 1, layout: "(batch,)") else {
            throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "cache_seqlens must not be NULL")
        }
        seqlens = lengths.values
        batchIndex = try indices("cache_batch_idx", cacheBatchIdx, rank: 1, layout: "(batch,)")?.values
        leftpad = try indices("cache_leftpad", cacheLeftpad, rank: 1, layout: "(batch,)")?.values
        table = try indices("block_table", blockTable, rank: 2, layout: "(batch, max_num_blocks_per_seq)").map {
            KVCacheAttention.BlockTable(entries: $0.values, pagesPerSequence: $0.shape[1])
        }
        attention = KVCacheAttention(
            causal: p.causal != 0, softmaxScale: p.has_scale != 0 ? p.softmax_scale : nil,
            windowLeft: Int(p.window_left), windowRight: Int(p.window_right), softcap: p.softcap,
            rotaryInterleaved: p.rotary_interleaved != 0, numSplits: Int(p.num_splits))
    }
}

@_cdecl("attn_flash_kvcache_forward")
public func attn_flash_kvcache_forward(
    _ params: UnsafePointer<attn_kvcache_params>?, _ q: UnsafePointer<attn_tensor>?,
    _ kCache: UnsafePointer<attn_tensor>?, _ vCache: UnsafePointer<attn_tensor>?,
    _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ rotaryCos: UnsafePointer<attn_tensor>?, _ rotarySin: UnsafePointer<attn_tensor>?,
    _ cacheSeqlens: UnsafePointer<attn_tensor>?, _ cacheBatchIdx: UnsafePointer<attn_tensor>?,
    _ cacheLeftpad: UnsafePointer<attn_tensor>?, _ blockTable: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_kvcache_forward") {
        let o = try KVCacheOperands(params, q, kCache, vCache, k, v, rotaryCos, rotarySin, cacheSeqlens, cacheBatchIdx,
                                    cacheLeftpad, blockTable, alibiSlopes, out, softmaxLse, int8Cache: false)
        func run<E: AttnStorage>(_: E.Type) throws {
            try o.attention(q: o.query.view(E.self), kCache: o.keys.mutableView(E.self), vCache: o.values.mutableView(E.self),
                            k: o.newKeys?.view(E.self), v: o.newValues?.view(E.self),
                            rotaryCos: o.cos?.view(E.self), rotarySin: o.sin?.view(E.self),
                            cacheSeqlens: o.seqlens, cacheBatchIndex: o.batchIndex, cacheLeftpad: o.leftpad,
                            blockTable: o.table, alibiSlopes: o.slopes?.view(Float.self), out: o.output.mutableView(E.self),
                            lse: o.lse?.mutableView(Float.self))
        }
        try withStorage(o.query.dtype) { try run($0) }
    }
}

@_cdecl("attn_flash_kvcache_int8_forward")
public func attn_flash_kvcache_int8_forward(
    _ params: UnsafePointer<attn_kvcache_params>?, _ q: UnsafePointer<attn_tensor>?,
    _ kCache: UnsafePointer<attn_tensor>?, _ kScale: UnsafePointer<attn_tensor>?,
    _ vCache: UnsafePointer<attn_tensor>?, _ vScale: UnsafePointer<attn_tensor>?,
    _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ rotaryCos: UnsafePointer<attn_tensor>?, _ rotarySin: UnsafePointer<attn_tensor>?,
    _ cacheSeqlens: UnsafePointer<attn_tensor>?, _ cacheBatchIdx: UnsafePointer<attn_tensor>?,
    _ cacheLeftpad: UnsafePointer<attn_tensor>?, _ blockTable: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_kvcache_int8_forward") {
        let o = try KVCacheOperands(params, q, kCache, vCache, k, v, rotaryCos, rotarySin, cacheSeqlens, cacheBatchIdx,
                                    cacheLeftpad, blockTable, alibiSlopes, out, softmaxLse, int8Cache: true)
        let keyScales = try Descriptor("k_scale", kScale, dtypes: [Int32(ATTN_DTYPE_F32)])
        let valueScales = try Descriptor("v_scale", vScale, dtypes: [Int32(ATTN_DTYPE_F32)])
        func run<E: AttnStorage>(_: E.Type) throws {
            try o.attention.int8Cache(
                q: o.query.view(E.self), kCache: o.keys.mutableView(Int8.self), kScale: keyScales.mutableView(Float.self),
                vCache: o.values.mutableView(Int8.self), vScale: valueScales.mutableView(Float.self),
                k: o.newKeys?.view(E.self), v: o.newValues?.view(E.self),
                rotaryCos: o.cos?.view(E.self), rotarySin: o.sin?.view(E.self),
                cacheSeqlens: o.seqlens, cacheBatchIndex: o.batchIndex, cacheLeftpad: o.leftpad,
                blockTable: o.table, alibiSlopes: o.slopes?.view(Float.self), out: o.output.mutableView(E.self),
                lse: o.lse?.mutableView(Float.self))
        }
        try withStorage(o.query.dtype) { try run($0) }
    }
}

@_cdecl("attn_merge_attention_states")
public func attn_merge_attention_states(
    _ outA: UnsafePointer<attn_tensor>?, _ lseA: UnsafePointer<attn_tensor>?,
    _ outB: UnsafePointer<attn_tensor>?, _ lseB: UnsafePointer<attn_tensor>?,
    _ out: UnsafePointer<attn_tensor>?, _ lse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_merge_attention_states") {
        let f32 = [Int32(ATTN_DTYPE_F32)]
        let first = try Descriptor("out_a", outA, dtypes: attentionDtypes)
        let second = try Descriptor("out_b", outB, dtypes: attentionDtypes)
        let merged = try Descriptor("out", out, dtypes: attentionDtypes)
        try second.requireDtype(first.dtype, sameAs: "out_a")
        try merged.requireDtype(first.dtype, sameAs: "out_a")
        let firstLse = try Descriptor("lse_a", lseA, dtypes: f32)
        let secondLse = try Descriptor("lse_b", lseB, dtypes: f32)
        let mergedLse = try lse.map { try Descriptor("lse", $0, dtypes: f32) }
        func run<E: AttnStorage>(_: E.Type) throws {
            try AttentionStates.merge(outA: first.view(E.self), lseA: firstLse.view(Float.self), outB: second.view(E.self),
                                      lseB: secondLse.view(Float.self), out: merged.mutableView(E.self),
                                      lse: mergedLse?.mutableView(Float.self))
        }
        try withStorage(first.dtype) { try run($0) }
    }
}
