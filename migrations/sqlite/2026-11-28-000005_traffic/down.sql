DROP INDEX store_paths_created;
DROP TABLE traffic_hourly;
