"""Data loading: records from the catalog to batches of mapped samples in the DataLoader workers.

:mod:`.build` builds the training and test loaders; :mod:`.samplers` draws their batches; :mod:`.loader_start`
picks how their workers start; :mod:`.shared_records`, :mod:`.record_buffer`, :mod:`.synthetic_records` and
:mod:`.chained_records` hold the records in shared memory; :mod:`.listing_cache` lists large dataset folders once.
Imports nothing, so that the dataset registrations can use the listing cache without loading torch.
"""
