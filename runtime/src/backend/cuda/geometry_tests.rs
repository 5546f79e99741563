use switchhead_kernels::cuda::source;

use super::*;

/// The `#define NAME value` of a kernel source.
fn define(module: &str, name: &str) -> u64 {
    let body = source(module).expect("module").body;
    let line = body
        .lines()
        .find(|l| l.starts_with(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{module}.cu has no #define {name}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn constants_match_the_cuda_sources() {
    assert_eq!(define("expert_gemm", "EG_BM"), EG_BM);
    assert_eq!(define("expert_gemm", "EG_BN"), EG_BN);
    assert_eq!(define("expert_gemm", "EG_THREADS"), EG_THREADS as u64);
    assert_eq!(define("attention", "AT_BQ"), AT_BQ);
    assert_eq!(define("attention", "AT_BKV"), AT_BKV);
    assert_eq!(define("attention", "AT_THREADS"), AT_THREADS as u64);
    assert_eq!(define("decode", "DEC_TILE"), DEC_TILE);
    assert_eq!(define("decode", "DEC_THREADS"), DEC_THREADS as u64);
    // The scan block's shared array is sized for OFFSETS_THREADS.
    let routing = source("routing").unwrap().body;
    assert!(routing.contains(&format!("partial[{OFFSETS_THREADS}]")));
    // Every kernel that reduces over a block needs whole warps.
    for t in [
        ROW_THREADS,
        ELEMENTWISE_THREADS,
        EG_THREADS,
        AT_THREADS,
        DEC_THREADS,
    ] {
        assert_eq!(t % 32, 0);
    }
}

#[test]
fn elementwise_covers_and_caps() {
    assert_eq!(elementwise(0).grid.0, 1);
    assert_eq!(elementwise(1).grid.0, 1);
    assert_eq!(elementwise(256).grid.0, 1);
    assert_eq!(elementwise(257).grid.0, 2);
    assert_eq!(elementwise(u64::MAX / 2).grid.0, MAX_STRIDE_BLOCKS);
}

#[test]
fn per_row_is_one_block_per_row() {
    let l = per_row("layer_norm", 4096).unwrap();
    assert_eq!((l.grid, l.block.0), ((4096, 1, 1), ROW_THREADS));
    assert!(per_row("layer_norm", 0).is_err());
}

#[test]
fn expert_gemm_grid_bounds_the_real_tile_count() {
    // c4-262m prefill: 8 x 512 tokens, H=4, k=2 -> 32768 slots over 16 experts, D = 1024.
    let l = expert_gemm(32_768, 16, 1024).unwrap();
    assert_eq!(l.grid, (16, 512 + 16, 1));
    // Any split of the slots over the experts fits in the grid.
    let splits: [&[u64]; 4] = [&[32_768], &[1; 16], &[65, 63, 0, 32_640], &[2048; 16]];
    for counts in splits {
        let padded = counts
            .iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(16)
            .collect::<Vec<_>>();
        let n: u64 = padded.iter().sum();
        let grid = expert_gemm(n, 16, 1024).unwrap().grid.1 as u64;
        assert!(expert_gemm_tiles(&padded) <= grid, "{counts:?}");
    }
    // Decode: one token, 4 slots of H*k, still one tile per used expert.
    assert_eq!(expert_gemm(4, 16, 112).unwrap().grid, (2, 1 + 16, 1));
    assert!(expert_gemm(64 * 70_000, 16, 64).is_err());
}

#[test]
fn attention_shared_memory_and_grid() {
    // dh = 112 (c4-262m): q, k/v, o tiles and the score tile.
    assert_eq!(
        attention_shared_bytes(112, false),
        (16 * 112 + 32 * 112 + 16 * 112 + 16 * 32 + 48) * 4
    );
    assert_eq!(
        attention_shared_bytes(112, true) - attention_shared_bytes(112, false),
        47 * 112 * 4
    );
    let l = flash_attention(8, 512, 4, 112, true, 227 * 1024).unwrap();
    assert_eq!(l.grid, (32, 32, 1));
    assert_eq!(l.block, (AT_THREADS, 1, 1));
    assert!(
        l.shared_bytes as u64 > DEFAULT_SHARED_BYTES as u64,
        "needs the opt-in attribute"
    );
    // wt103-262m: dh = 132 still fits an H100/H200 block.
    assert!(flash_attention(1, 512, 2, 132, true, 227 * 1024).is_ok());
    let too_big = flash_attention(1, 512, 2, 1024, true, 227 * 1024).unwrap_err();
    assert!(too_big.to_string().contains("shared memory"), "{too_big}");
    // A tail tile: T = 17 -> two query tiles.
    assert_eq!(
        flash_attention(1, 17, 1, 32, false, 48 * 1024)
            .unwrap()
            .grid
            .0,
        2
    );
}

#[test]
fn decode_attention_grid() {
    let l = decode_attention(8, 4, 1, 112).unwrap();
    assert_eq!(l.grid, (32, 1, 1));
    assert_eq!(l.shared_bytes as u64, (2 * 112 + 128 + 33) * 4);
    assert!(decode_attention(0, 4, 1, 112).is_err());
}
