"""Index side of trimodal: FAISS indexes per modality, sequence store, versioned publish, search.

The corpus-embedding and search code lands with the index issue; nothing here yet.
"""
