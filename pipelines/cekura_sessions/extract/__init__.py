"""The dlt source `cekura`: the row contract, the one conversion to Arrow, the merge and
deletion hints, and what each listing loads."""
