-- import.new and import.clear invalidate the valid operations: find them without a scan.
CREATE INDEX import_operations_valid ON import_operations (seq) WHERE valid;
