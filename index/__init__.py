"""Index side of trimodal: FAISS indexes per modality, sequence store, versioned publish, search.

reader (decoding in worker processes) → embed (resumable shards) → build (FAISS + stores) →
version (atomic publish, checksums) → search (fused first pass, sequence re-rank, segments).
"""
